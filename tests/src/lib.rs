//! `brlock-tests`: everything that proves `brlockd` from the outside.
//!
//! - [`brlockd`]: finds (building it if needed) and runs the real binary on 127.0.0.1 with
//!   port 0; a guard kills it on drop.
//! - The NLM client, the fake portmapper and the callback listener are `brlock-testkit`'s
//!   (`testkit/`), shared with `brlock-native`'s in-process tests.
//! - [`pg`]: a PostgreSQL database of a test's own.
//! - [`script`]: scenario scripts in `conformance/rpcgen`'s command language, so one scenario
//!   runs through the kit's client and through the independent rpcgen client alike.
//!
//! The end-to-end tests are in `tests/` (`e2e`, `rpcgen_client`, `tshark`); the load
//! generator is `src/bin/brlock-bench.rs` (figures in `BENCH.md`).
//!
//! Running: `tests/install-tools.sh` (tshark, rpcgen, libtirpc-dev; idempotent), then
//! `cargo test -p brlock-tests` as root (tshark captures on `lo`). `brlockd` is built by the
//! tests themselves into the same target dir and profile; set `BRLOCKD=/path/to/brlockd` to
//! test a prebuilt binary instead.

pub mod brlockd;
pub mod pg;
pub mod scenarios;
pub mod script;
