//! The trace format's readable form (docs/trace-format.md), as `brlock-conformance` reads and writes
//! it. The visualiser keeps the comments: those before the header describe the trace, those before a
//! step annotate it, and both are written back when the trace is downloaded, so a shared file explains
//! itself.

pub use brlock_conformance::AnnotatedTrace;

use crate::Error;

/// Reads a JSON-lines trace. Errors name the line (counting from 1, comments included).
pub fn parse(text: &str) -> Result<AnnotatedTrace, Error> {
    brlock_conformance::parse_jsonl_annotated(text).map_err(|e| Error::new(e.to_string()))
}

/// Writes a trace as JSON lines, each comment line prefixed with `# `.
pub fn write(trace: &AnnotatedTrace) -> String {
    brlock_conformance::write_jsonl_annotated(trace)
}
