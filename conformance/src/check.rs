//! `brlock replay --check`: a replay against recorded outputs, stopping at the first difference.

use core::fmt;

use serde::Serialize;

use crate::jsonl::{ParseError, content_lines, parse_line};
use crate::replay::StepOutput;

/// One recorded output, with the line it was read from (none for postcard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub line: Option<usize>,
    pub output: StepOutput,
}

/// Reads recorded outputs in JSON lines; `#` lines and blank lines are comments.
pub fn parse_expected(text: &str) -> Result<Vec<Expected>, ParseError> {
    content_lines(text)
        .map(|(line, text)| {
            Ok(Expected {
                line: Some(line),
                output: parse_line(line, text)?,
            })
        })
        .collect()
}

/// The first place where a replay and the recording part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The step (event number; 0 = restore) where they part.
    pub step: u64,
    /// The expected file's line, when there is one.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}", self.step)?;
        if let Some(line) = self.line {
            write!(f, " (expected line {line})")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("actions always serialise")
}

/// Compares step by step and action by action, in order: the host carries actions out in order, so
/// order is part of the answer.
pub fn compare(expected: &[Expected], actual: &[StepOutput]) -> Result<(), Difference> {
    for (i, want) in expected.iter().enumerate() {
        let differ = |message: String| {
            Err(Difference {
                step: want.output.step,
                line: want.line,
                message,
            })
        };
        let Some(got) = actual.get(i) else {
            return differ(format!(
                "expected output for step {}, but the replay ended after {} outputs",
                want.output.step,
                actual.len()
            ));
        };
        if got.step != want.output.step {
            return differ(format!(
                "expected output for step {}, got step {}",
                want.output.step, got.step
            ));
        }
        let (want, got) = (&want.output.actions, &got.actions);
        for (n, (w, g)) in want.iter().zip(got).enumerate() {
            if w != g {
                return differ(format!(
                    "action {}: expected {}, got {}",
                    n + 1,
                    json(w),
                    json(g)
                ));
            }
        }
        if want.len() != got.len() {
            let (more, which) = if want.len() > got.len() {
                ("missing", &want[got.len()..])
            } else {
                ("unexpected", &got[want.len()..])
            };
            return differ(format!(
                "expected {} actions, got {}; {more}: {}",
                want.len(),
                got.len(),
                which.iter().map(json).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some(extra) = actual.get(expected.len()) {
        return Err(Difference {
            step: extra.step,
            line: None,
            message: format!(
                "the recording ends here but the replay goes on: {}",
                json(extra)
            ),
        });
    }
    Ok(())
}
