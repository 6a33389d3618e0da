//! End-to-end tests: the real `brlockd` on 127.0.0.1 with port 0, driven over TCP and UDP by
//! `brlock_testkit::client` (NLM v1, v3 and v4). Every server is a `Brlockd` guard, killed on
//! drop; every test starts its own, so tests run in parallel and share no state.
//!
//! - `locking`: LOCK/TEST/UNLOCK/CANCEL, SHARE/UNSHARE, NM_LOCK, FREE_ALL scenarios as
//!   scripts, per version and transport.
//! - `callbacks`: blocking locks granted by NLM_GRANTED, `*_MSG` answered by `*_RES`, to a
//!   test NLM listener found through a test portmapper; GRANTED resent while the listener is
//!   down, and the grant undone when it never comes up.
//! - `malformed`: every kind of bad input gets the answer RFC 5531 prescribes, and the server
//!   still serves afterwards.
//! - `cli`: the command-line contract (bad flag → 2, SIGTERM → 0, metrics line, profiles,
//!   `--print-config`, units, start-up errors that name their cause).
//! - `logs`: `--log-format json`, a debug line per request, info lines for a grant after
//!   waiting, a deadlock and a limit refusal.
//! - `events`: `GET /events` — the snapshot, then every step; a captured trace replays
//!   identically; a subscriber that never reads is dropped; the subscriber cap.
//! - `admin`: the admin HTTP endpoints (`/locks`, `/waiters`, `/wait-for`, …) of a server holding
//!   locks and waiters of two hosts, their filters and limits, and `brlock locks` / `brlock graph`.
//! - `metrics`: `promtool check metrics` on a live server's `/metrics`, and its content types.
//! - `registration`: rpcbind UNSET/SET with a test rpcbind, SM_MON and SM_UNMON to a fake
//!   statd, and the statd reboot relay (NLM procedure 16) freeing a rebooted client's locks.
//! - `restart`: reboot notices to the clients' statd after a restart, the built-in NSM, what a
//!   restart keeps (bindings, shares), one live instance per SQLite store, rpcbind after a crash.

mod admin;
mod callbacks;
mod cli;
mod events;
mod locking;
mod logs;
mod malformed;
mod metrics;
mod registration;
mod restart;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};

/// Asserts the server at `addr` answers NULL on a new TCP connection and a new UDP socket:
/// whatever the test did before did not take it down.
pub fn assert_still_serves(addr: SocketAddr) {
    for transport in Transport::ALL {
        let mut c = NlmClient::connect(transport, addr, NlmVersion::V4)
            .unwrap_or_else(|e| panic!("cannot connect over {transport:?} to {addr}: {e}"));
        c.null()
            .unwrap_or_else(|e| panic!("NULL over {transport:?} after the test: {e}"));
    }
}

/// Polls `f` until it returns `Some` or `within` passes.
pub fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
