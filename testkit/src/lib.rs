//! `brlock-testkit`: the one set of peers every brlock test and load generator talks to brlockd
//! with, on the wire codec alone (`brlock-wire`), so that a test of the real binary, an in-process
//! test of `brlock-native` and a benchmark speak through the same client. Dev-only: nothing that
//! ships depends on it.
//!
//! - [`client`]: a blocking ONC RPC client over TCP or UDP, and an NLM client (v1, v3, v4) on it.
//! - [`portmapper`]: a fake portmapper/rpcbind that maps NLM and NSM and records what it is asked.
//! - [`listener`]: a client host's NLM service, where NLM_GRANTED and the `*_RES` calls arrive;
//!   [`listener::ClientHost`] is one with a portmapper pointing at it.
//! - [`rpc_server`]: the small RPC server both are built on, for other fakes (a statd).
//! - [`socket`]: a TCP connection with the smallest kernel buffers, to make back-pressure show.
//! - [`http`]: a GET of brlockd's HTTP endpoints, and a sample out of `/metrics`.
//!
//! Every call has a deadline, and every record a fake keeps is bounded ([`rpc_server::CALLS_KEPT`]).

pub mod client;
pub mod http;
pub mod listener;
pub mod portmapper;
pub mod rpc_server;
pub mod socket;
