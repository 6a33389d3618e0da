//! Replaying a trace: the actions of each step, numbered as the trace numbers its events.

use brlock_core::{Action, Trace, TraceError};
use serde::{Deserialize, Serialize};

/// The actions one step produced. Step 0 holds the actions of the restore (only when there are some);
/// step N those of the trace's Nth event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOutput {
    pub step: u64,
    pub actions: Vec<Action>,
}

/// What a replay gives, as the wasm guest returns it: the outputs, or why the trace cannot be replayed.
pub type Replayed = Result<Vec<StepOutput>, String>;

/// Runs the core over the whole trace. Every event gets an output line, even one with no actions, so
/// line N of the output always belongs to event N.
pub fn replay(trace: &Trace) -> Result<Vec<StepOutput>, TraceError> {
    let (initial, steps) = trace.run()?;
    let mut outputs = Vec::with_capacity(steps.len() + 1);
    if !initial.is_empty() {
        outputs.push(StepOutput {
            step: 0,
            actions: initial,
        });
    }
    outputs.extend(
        steps
            .into_iter()
            .enumerate()
            .map(|(i, actions)| StepOutput {
                step: i as u64 + 1,
                actions,
            }),
    );
    Ok(outputs)
}
