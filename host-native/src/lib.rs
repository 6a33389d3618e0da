//! `brlock-native`: the tokio host around `brlock-core` — the `brlockd` NLM server.
//!
//! The host is a loop: bytes in → decode → `Core::handle` → carry out the actions in order.
//! It decides no lock semantics; those live in the core.

pub mod client;
pub mod config;
pub mod metrics;
pub mod nlm;
pub mod nsm;
pub mod portmap;
pub mod rpc;
pub mod server;
pub mod store;
pub mod xdr;
