//! `brlock-conformance`: property tests against a naive model, differential tests against the
//! Linux kernel's fcntl locks, and native-vs-wasm determinism checks.
