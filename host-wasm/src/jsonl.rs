//! The trace format's readable form (docs/trace-format.md): JSON lines, the `TraceHeader` first, then
//! one `TraceStep` per line; blank lines and lines starting with `#` are comments. The visualiser keeps
//! the comments: those before the header describe the trace, those before a step annotate it, and both
//! are written back when the trace is downloaded, so a shared file explains itself.

use std::fmt::Write as _;

use brlock_core::{TRACE_VERSION, Trace, TraceHeader, TraceStep};
use serde::de::DeserializeOwned;

use crate::Error;

/// A trace with the comments that explain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotatedTrace {
    pub trace: Trace,
    /// The comment lines before the header, joined with newlines.
    pub description: String,
    /// For each step, the comment lines just before it (empty when none).
    pub notes: Vec<String>,
}

/// Reads a JSON-lines trace. Errors name the line (counting from 1, comments included).
pub fn parse(text: &str) -> Result<AnnotatedTrace, Error> {
    let mut header: Option<TraceHeader> = None;
    let mut description = String::new();
    let mut pending = String::new();
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            let target = if header.is_none() {
                &mut description
            } else {
                &mut pending
            };
            if !target.is_empty() {
                target.push('\n');
            }
            target.push_str(comment);
            continue;
        }
        match header {
            None => {
                check_version(number, line)?;
                header = Some(parse_line(number, line)?);
            }
            Some(_) => {
                steps.push(parse_line::<TraceStep>(number, line)?);
                notes.push(std::mem::take(&mut pending));
            }
        }
    }
    let header =
        header.ok_or_else(|| Error::new("empty trace: the first line must be the trace header"))?;
    Ok(AnnotatedTrace {
        trace: Trace { header, steps },
        description,
        notes,
    })
}

/// Writes a trace as JSON lines, each comment line prefixed with `# `.
pub fn write(trace: &AnnotatedTrace) -> String {
    let mut out = String::new();
    comment(&mut out, &trace.description);
    json_line(&mut out, &trace.trace.header);
    for (index, step) in trace.trace.steps.iter().enumerate() {
        comment(&mut out, trace.notes.get(index).map_or("", String::as_str));
        json_line(&mut out, step);
    }
    out
}

fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "# {line}");
    }
}

fn json_line<T: serde::Serialize>(out: &mut String, value: &T) {
    // The trace types hold nothing serde_json cannot write (string keys, no floats).
    let text = serde_json::to_string(value).expect("trace types serialise to JSON");
    out.push_str(&text);
    out.push('\n');
}

/// The version is checked first, so a trace of another version is reported as such and not as whatever
/// field it happens to lack.
fn check_version(number: usize, line: &str) -> Result<(), Error> {
    let value: serde_json::Value = parse_line(number, line)?;
    match value
        .get("brlock_trace")
        .and_then(serde_json::Value::as_u64)
    {
        Some(version) if version == u64::from(TRACE_VERSION) => Ok(()),
        Some(version) => Err(Error::new(format!(
            "line {number}: unsupported trace version {version} (this visualiser reads version {TRACE_VERSION})"
        ))),
        None => Err(Error::new(format!(
            "line {number}: not a trace header: the first line needs \"brlock_trace\": {TRACE_VERSION}"
        ))),
    }
}

fn parse_line<T: DeserializeOwned>(number: usize, line: &str) -> Result<T, Error> {
    serde_json::from_str(line).map_err(|e| {
        // serde_json counts lines within the one line it saw; only its column is worth keeping.
        let full = e.to_string();
        let message = full
            .rfind(" at line ")
            .map_or(full.as_str(), |at| &full[..at]);
        Error::new(format!("line {number}: {message} (column {})", e.column()))
    })
}
