//! Traces: a run of the core written down — a header (format version, configuration, epoch, records
//! to restore or a snapshot to start from) and the events with their `now`. Replaying a trace gives the same actions on every
//! platform. The serde form is the documented trace format (docs/trace-format.md): JSON lines for
//! people and tools, postcard for wasm and fuzzing. Parsing text is the hosts' business; the types and
//! the replay rules live here so every host replays alike.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::action::{Action, LockRecord};
use crate::config::Config;
use crate::event::Event;
use crate::snapshot::Snapshot;
use crate::state::Core;
use crate::time::Instant;

/// The trace format version this core writes and reads.
pub const TRACE_VERSION: u32 = 1;

/// The first line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceHeader {
    /// Format version; must be [`TRACE_VERSION`].
    pub brlock_trace: u32,
    /// The configuration of the core the run starts with; missing fields take the brlock profile's.
    #[cfg_attr(feature = "serde", serde(default))]
    pub config: Config,
    /// The server epoch of the run (default 1): what its `Persist` actions carry.
    #[cfg_attr(feature = "serde", serde(default = "first_epoch"))]
    pub epoch: u64,
    /// When the run starts (the `now` of a restore).
    #[cfg_attr(feature = "serde", serde(default))]
    pub start: Instant,
    /// Records persisted by an earlier epoch: the run starts with [`Core::restore`] and so in grace.
    #[cfg_attr(feature = "serde", serde(default))]
    pub restore: Option<Vec<LockRecord>>,
    /// A running core's whole state: the run continues from it (brlockd's `/events` starts so).
    /// Its config, epoch and `now` are the header's `config`, `epoch` and `start`.
    #[cfg_attr(feature = "serde", serde(default))]
    pub snapshot: Option<Box<Snapshot>>,
}

#[cfg(feature = "serde")]
fn first_epoch() -> u64 {
    1
}

impl TraceHeader {
    /// A header for a fresh run with `config`: epoch 1, starting at 0, nothing restored.
    pub fn new(config: Config) -> Self {
        Self {
            brlock_trace: TRACE_VERSION,
            config,
            epoch: 1,
            start: Instant::ZERO,
            restore: None,
            snapshot: None,
        }
    }

    /// The header of a trace that continues from `core` as it is now.
    pub fn from_snapshot(core: &Core) -> Self {
        Self {
            brlock_trace: TRACE_VERSION,
            config: core.config().clone(),
            epoch: core.epoch(),
            start: core.now(),
            restore: None,
            snapshot: Some(Box::new(core.snapshot())),
        }
    }
}

/// One event of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TraceStep {
    /// When the event happened: the `now` it is handed to the core with. Never before the previous
    /// step's (nor the header's `start`); [`Replay::step`] refuses a trace where it is.
    pub now: Instant,
    /// The event.
    pub event: Event,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Trace {
    /// How the core is built before the first event.
    pub header: TraceHeader,
    /// The events, in order.
    pub steps: Vec<TraceStep>,
}

/// Why a trace cannot be replayed. `step` counts events from 1 (0 is the header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceError {
    /// The event that could not be replayed, from 1; 0 for the header.
    pub step: usize,
    /// What is wrong, for people.
    pub message: alloc::string::String,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.step == 0 {
            write!(f, "trace header: {}", self.message)
        } else {
            write!(f, "trace event {}: {}", self.step, self.message)
        }
    }
}

/// A trace being replayed one step at a time (the visualiser steps back by replaying from the start).
#[derive(Clone, Debug)]
pub struct Replay {
    /// The core as of the last step replayed: the views read it.
    pub core: Core,
    /// Actions produced by building the core (restore), before the first event.
    pub initial: Vec<Action>,
    last_now: Instant,
    step: usize,
}

impl Replay {
    /// Builds the core the header describes (restoring its records, if any) and stands before the
    /// first event. Fails on another format version or records the core cannot restore.
    pub fn start(header: &TraceHeader) -> Result<Replay, TraceError> {
        let error = |message: alloc::string::String| TraceError { step: 0, message };
        if header.brlock_trace != TRACE_VERSION {
            return Err(error(alloc::format!(
                "unsupported trace version {} (this core reads version {TRACE_VERSION})",
                header.brlock_trace
            )));
        }
        let (core, initial) = match (&header.restore, &header.snapshot) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "a trace starts from a restore or from a snapshot, not both".into(),
                ));
            }
            (None, Some(snapshot)) => {
                let core = Snapshot::clone(snapshot)
                    .into_core()
                    .map_err(|e| error(alloc::format!("damaged snapshot: {e}")))?;
                if (core.config(), core.epoch(), core.now())
                    != (&header.config, header.epoch, header.start)
                {
                    return Err(error(
                        "the snapshot's config, epoch or time differs from the header's".into(),
                    ));
                }
                (core, Vec::new())
            }
            (None, None) => {
                let mut core = Core::with_epoch(header.config.clone(), header.epoch);
                core.now = header.start;
                (core, Vec::new())
            }
            (Some(records), None) => Core::restore(
                header.config.clone(),
                header.start,
                header.epoch,
                records.iter().cloned(),
            )
            .map_err(|e| error(alloc::format!("cannot restore: {e}")))?,
        };
        Ok(Replay {
            core,
            initial,
            last_now: header.start,
            step: 0,
        })
    }

    /// Runs one event and returns its actions. A trace whose time goes backwards is refused (the core
    /// itself would treat an earlier `now` as the latest, but a trace that says so is malformed).
    pub fn step(&mut self, step: &TraceStep) -> Result<Vec<Action>, TraceError> {
        self.step += 1;
        if step.now < self.last_now {
            return Err(TraceError {
                step: self.step,
                message: alloc::format!(
                    "time goes backwards: {} after {}",
                    step.now.as_millis(),
                    self.last_now.as_millis()
                ),
            });
        }
        self.last_now = step.now;
        Ok(self.core.step(step.now, step.event.clone()))
    }
}

impl Trace {
    /// Replays the whole trace: the restore's actions, then each event's actions.
    pub fn run(&self) -> Result<(Vec<Action>, Vec<Vec<Action>>), TraceError> {
        let mut replay = Replay::start(&self.header)?;
        let mut outputs = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            outputs.push(replay.step(step)?);
        }
        Ok((replay.initial, outputs))
    }
}
