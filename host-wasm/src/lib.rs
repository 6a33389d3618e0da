//! `brlock-wasm`: the core in the browser. [`Simulator`] runs `brlock-core` over a trace that grows as
//! events are issued and can be looked at from any step, forward or back; [`bindings`] exports it to
//! JavaScript with wasm-bindgen (as `Simulator`), and `web/` is the page that draws it.
//!
//! This crate decides no lock semantics: every outcome, action and view comes from the core. It adds
//! only what a person exploring a trace needs — the trace's comments, stepping back, built-in examples.

pub mod bindings;
pub mod examples;
pub mod jsonl;
mod simulator;

use std::fmt;

pub use simulator::Simulator;

/// Why the simulator refused: a trace that does not parse or replay, time going backwards, an unknown
/// profile or example. Reaches JavaScript as an exception carrying `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
