//! `brlock-wire`: the hand-written wire codec of `brlockd` — XDR, ONC RPC (record marking,
//! call/reply, auth), NLM v1/v3/v4, NSM and portmap.
//!
//! Pure encode/decode between bytes and typed messages: no sockets, no clock, no lock semantics.
//! Decoding never panics, whatever the bytes (quickcheck here, cargo-fuzz in `fuzz/`), and every
//! message that decodes re-encodes to bytes that decode to the same message. It is its own crate
//! so that the fuzz target builds this code alone, not all of `brlockd`; `brlock-native`
//! re-exports the modules at the same paths (`brlock_native::nlm`, …).
#![forbid(unsafe_code)]

pub mod nlm;
pub mod nsm;
pub mod portmap;
pub mod rpc;
pub mod xdr;
