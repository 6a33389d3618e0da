//! `brlock-native`: the tokio host around `brlock-core` — the `brlockd` NLM server.
//!
//! The host is a loop: bytes in → decode → `Core::handle` → carry out the actions in order.
//! It decides no lock semantics; those live in the core.

pub mod nlm;
pub mod nsm;
pub mod portmap;
pub mod rpc;
pub mod xdr;
