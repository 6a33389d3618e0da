//! The readable form: JSON lines. Line 1 is the [`TraceHeader`], then one [`TraceStep`] per line.
//! Blank lines and lines starting with `#` are comments, so scenario files can explain themselves.

use core::fmt;

use brlock_core::{Instant, TRACE_VERSION, Trace, TraceHeader, TraceStep};
use serde::de::DeserializeOwned;

use crate::replay::StepOutput;

/// Why a text trace (or an expected output) cannot be read. `line` counts from 1 and includes comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Lines that carry JSON, with their 1-based line numbers.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses one JSON line, reporting serde's message with our line number (serde's own "line 1" would
/// only confuse).
pub(crate) fn parse_line<T: DeserializeOwned>(line: usize, text: &str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(at) => format!("{} (column {})", &full[..at], e.column()),
            None => full,
        };
        ParseError { line, message }
    })
}

/// Reads a JSON-lines trace. Besides the shape of each line it checks what makes a trace unreplayable:
/// the format version and time going backwards.
pub fn parse_jsonl(text: &str) -> Result<Trace, ParseError> {
    parse_jsonl_lines(text).map(|(trace, _)| trace)
}

/// [`parse_jsonl`], also giving the line number of the header and of each step (for error messages
/// about steps found later, at replay).
pub fn parse_jsonl_lines(text: &str) -> Result<(Trace, Vec<usize>), ParseError> {
    parse(text).map(|(annotated, lines)| (annotated.trace, lines))
}

/// A trace with the comments that explain it: the comment lines before the header describe the trace,
/// those before a step annotate that step. The visualiser shows them and writes them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnotatedTrace {
    pub trace: Trace,
    /// The comment lines before the header, joined with newlines.
    pub description: String,
    /// For each step, the comment lines just before it (empty when none).
    pub notes: Vec<String>,
}

/// [`parse_jsonl`], keeping the comments.
pub fn parse_jsonl_annotated(text: &str) -> Result<AnnotatedTrace, ParseError> {
    parse(text).map(|(annotated, _)| annotated)
}

/// Writes a trace as JSON lines with its comments, each comment line prefixed with `# `.
pub fn write_jsonl_annotated(annotated: &AnnotatedTrace) -> String {
    let comment = |out: &mut String, text: &str| {
        for line in text.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    };
    let mut out = String::new();
    comment(&mut out, &annotated.description);
    let mut plain = write_jsonl(&annotated.trace)
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into_iter();
    out.push_str(&plain.next().unwrap_or_default());
    out.push('\n');
    for (index, line) in plain.enumerate() {
        comment(
            &mut out,
            annotated.notes.get(index).map_or("", String::as_str),
        );
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn parse(text: &str) -> Result<(AnnotatedTrace, Vec<usize>), ParseError> {
    let mut header: Option<TraceHeader> = None;
    let (mut description, mut pending) = (String::new(), String::new());
    let (mut steps, mut notes, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_now = Instant::ZERO;
    for (index, line) in text.lines().enumerate() {
        let (number, line) = (index + 1, line.trim());
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
        numbers.push(number);
        match &header {
            None => {
                check_version(number, line)?;
                let parsed: TraceHeader = parse_line(number, line)?;
                last_now = parsed.start;
                header = Some(parsed);
            }
            Some(_) => {
                let step: TraceStep = parse_line(number, line)?;
                if step.now < last_now {
                    return Err(ParseError {
                        line: number,
                        message: format!(
                            "time goes backwards: now {} after {}",
                            step.now.as_millis(),
                            last_now.as_millis()
                        ),
                    });
                }
                last_now = step.now;
                steps.push(step);
                notes.push(std::mem::take(&mut pending));
            }
        }
    }
    let Some(header) = header else {
        return Err(ParseError {
            line: 1,
            message: "empty trace: the first line must be the trace header".into(),
        });
    };
    Ok((
        AnnotatedTrace {
            trace: Trace { header, steps },
            description,
            notes,
        },
        numbers,
    ))
}

/// The version is checked before the rest of the header, so a trace of another version is reported as
/// such and not as whatever field it happens to lack.
fn check_version(line: usize, text: &str) -> Result<(), ParseError> {
    let value: serde_json::Value = parse_line(line, text)?;
    let error = |message: String| Err(ParseError { line, message });
    match value.get("brlock_trace") {
        None => {
            error("not a trace header: missing field `brlock_trace` (the format version)".into())
        }
        Some(v) if v.as_u64() == Some(u64::from(TRACE_VERSION)) => Ok(()),
        Some(v) => error(format!(
            "unsupported trace version {v} (this core reads version {TRACE_VERSION})"
        )),
    }
}

/// Writes a trace as JSON lines: the header, then one line per step.
pub fn write_jsonl(trace: &Trace) -> String {
    let mut out = serde_json::to_string(&trace.header).expect("a header always serialises");
    out.push('\n');
    for step in &trace.steps {
        out.push_str(&serde_json::to_string(step).expect("an event always serialises"));
        out.push('\n');
    }
    out
}

/// Writes replay outputs as JSON lines, one `{"step":N,"actions":[...]}` per line.
pub fn write_outputs_jsonl(outputs: &[StepOutput]) -> String {
    let mut out = String::new();
    for output in outputs {
        out.push_str(&serde_json::to_string(output).expect("actions always serialise"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_reads_back_as_written_and_comments_do_not_count_as_steps() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios/grace-reclaim.jsonl"
        ))
        .unwrap();
        let (trace, lines) = parse_jsonl_lines(&text).unwrap();
        assert_eq!(lines.len(), trace.steps.len() + 1);
        assert!(text.lines().nth(lines[1] - 1).unwrap().starts_with('{'));
        assert_eq!(parse_jsonl(&write_jsonl(&trace)).unwrap(), trace);
        let bytes = crate::encode_trace(&trace);
        assert_eq!(crate::decode_trace(&bytes).unwrap(), trace);
    }

    #[test]
    fn errors_name_the_line_not_serdes_line_one() {
        let error =
            parse_jsonl("# c\n{\"brlock_trace\":1}\n{\"now\":1,\"event\":\"tock\"}\n").unwrap_err();
        assert_eq!(error.line, 3);
        assert!(
            error.message.starts_with("unknown variant `tock`")
                && error.message.ends_with("(column 23)"),
            "{error}"
        );
    }
}
