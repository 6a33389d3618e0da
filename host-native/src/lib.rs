//! `brlock-native`: the tokio host around `brlock-core` — the `brlockd` NLM server.
//!
//! The host is a loop: bytes in → decode → `Core::handle` → carry out the actions in order.
//! It decides no lock semantics; those live in the core.

pub mod config;
pub mod http;
pub mod http_events;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod web_assets;

// The wire codec is its own crate (`host-native/wire`) so that its fuzz target builds without
// tokio and sqlx; it stays reachable at the paths it always had (`crate::nlm`, `brlock_native::rpc`).
pub use brlock_wire::{nlm, nsm, portmap, rpc, xdr};
