//! `brlock`: tools around the core, one subcommand each.
//!
//! ```text
//! brlock replay [--format json|postcard] [--check EXPECTED] TRACE
//! brlock locks --server ADDR:PORT [--file HEX] [--owner OWNER] [--client NAME] [--limit N] [--json]
//! brlock graph --server ADDR:PORT [--limit N]
//! ```
//!
//! `replay` runs the core over TRACE (JSON lines or postcard, told apart by content; `-` reads standard
//! input) and prints each event's actions: JSON lines `{"step":N,"actions":[...]}` by default, postcard
//! with `--format postcard`. With `--check`, it compares with the recorded EXPECTED (in the `--format`'s
//! form) instead and names the first difference.
//!
//! `locks` and `graph` read a running brlockd's admin HTTP endpoints (`brlock/admin.rs`): its held
//! locks and waiters as a table like `lslocks`, and its wait-for graph as Graphviz DOT.
//!
//! Exit codes: 0 done (or all matches, or `--help`/`--version`), 1 a difference from EXPECTED, 2 a bad
//! trace, a bad EXPECTED file or bad arguments.
//!
//! A new subcommand is a variant of [`Command`] with its own `Args` struct and one function returning
//! `Result<(), Failure>`; `main` only dispatches.

use std::io::{Read, Write};
use std::process::ExitCode;

use brlock_conformance::{
    Expected, StepOutput, compare, decode_outputs, decode_trace, encode_outputs, parse_expected,
    parse_jsonl_lines, write_outputs_jsonl,
};
use brlock_core::{Replay, Trace};
use clap::{Parser, Subcommand, ValueEnum};

// A crate root's modules live beside it (src/bin/, where every file is a binary of its own).
#[path = "brlock/admin.rs"]
mod admin;

#[derive(Parser)]
#[command(
    name = "brlock",
    version,
    about = "Tools around the brlock core: replay and check traces, look at a running brlockd."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the core over a trace and print (or check) each event's actions.
    Replay(ReplayArgs),
    /// List a running brlockd's held locks and waiters, like lslocks.
    Locks(admin::LocksArgs),
    /// Print a running brlockd's wait-for graph as Graphviz DOT.
    Graph(admin::GraphArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 done or all outputs match, 1 a difference from EXPECTED, \
                        2 a bad trace, a bad EXPECTED file or bad arguments."
)]
struct ReplayArgs {
    /// The form of the printed outputs and of EXPECTED.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Compare with these recorded outputs instead of printing, and name the first difference.
    #[arg(long, value_name = "EXPECTED")]
    check: Option<String>,
    /// The trace: JSON lines or postcard (told apart by content); `-` reads standard input.
    #[arg(value_name = "TRACE")]
    trace: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// JSON lines, `{"step":N,"actions":[...]}`.
    #[value(alias = "jsonl")]
    Json,
    /// The postcard encoding of the same outputs.
    Postcard,
}

/// A failure to report: the message and the exit code.
struct Failure(String, u8);

fn bad(message: String) -> Failure {
    Failure(message, 2)
}

fn read(path: &str) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let result = if path == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::read(path).map(|b| bytes = b)
    };
    result.map_err(|e| bad(format!("{path}: {e}")))?;
    Ok(bytes)
}

/// A text trace starts (after blanks) with `{` or a `#` comment; anything else is postcard.
fn looks_like_text(bytes: &[u8]) -> bool {
    matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'#') | None
    )
}

/// Reads and replays TRACE. Every error names the line (text) or the event (postcard).
fn run_trace(path: &str) -> Result<Vec<StepOutput>, Failure> {
    let bytes = read(path)?;
    let (trace, lines): (Trace, Option<Vec<usize>>) = if looks_like_text(&bytes) {
        let text = String::from_utf8(bytes).map_err(|e| bad(format!("{path}: not UTF-8: {e}")))?;
        let (trace, lines) = parse_jsonl_lines(&text).map_err(|e| bad(format!("{path}: {e}")))?;
        (trace, Some(lines))
    } else {
        (
            decode_trace(&bytes).map_err(|e| bad(format!("{path}: {e}")))?,
            None,
        )
    };
    let where_ = |step: usize| match &lines {
        Some(lines) => format!("line {}", lines[step]),
        None if step == 0 => "header".to_string(),
        None => format!("event {step}"),
    };
    let error =
        |e: brlock_core::TraceError| bad(format!("{path}: {}: {}", where_(e.step), e.message));
    let mut replay = Replay::start(&trace.header).map_err(error)?;
    let mut outputs = Vec::with_capacity(trace.steps.len() + 1);
    if !replay.initial.is_empty() {
        outputs.push(StepOutput {
            step: 0,
            actions: std::mem::take(&mut replay.initial),
        });
    }
    for (i, step) in trace.steps.iter().enumerate() {
        let actions = replay.step(step).map_err(error)?;
        outputs.push(StepOutput {
            step: i as u64 + 1,
            actions,
        });
    }
    Ok(outputs)
}

fn read_expected(path: &str, format: Format) -> Result<Vec<Expected>, Failure> {
    let bytes = read(path)?;
    match format {
        Format::Json => {
            let text =
                String::from_utf8(bytes).map_err(|e| bad(format!("{path}: not UTF-8: {e}")))?;
            parse_expected(&text).map_err(|e| bad(format!("{path}: {e}")))
        }
        Format::Postcard => Ok(decode_outputs(&bytes)
            .map_err(|e| bad(format!("{path}: {e}")))?
            .into_iter()
            .map(|output| Expected { line: None, output })
            .collect()),
    }
}

fn replay(args: ReplayArgs) -> Result<(), Failure> {
    // EXPECTED is read first: a bad recording is an error (2) even when the trace is bad too.
    let expected = args
        .check
        .as_deref()
        .map(|path| read_expected(path, args.format))
        .transpose()?;
    let outputs = run_trace(&args.trace)?;
    if let (Some(expected), Some(path)) = (expected, &args.check) {
        compare(&expected, &outputs).map_err(|d| Failure(format!("{path}: {d}"), 1))?;
        eprintln!("{path}: all {} outputs match", outputs.len());
        return Ok(());
    }
    let bytes = match args.format {
        Format::Json => write_outputs_jsonl(&outputs).into_bytes(),
        Format::Postcard => encode_outputs(&outputs),
    };
    std::io::stdout()
        .lock()
        .write_all(&bytes)
        .map_err(|e| bad(format!("stdout: {e}")))
}

fn main() -> ExitCode {
    // Bad arguments exit 2 with clap's message; --help and --version print to stdout and exit 0.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Locks(args) => admin::locks(args),
        Command::Graph(args) => admin::graph(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message, code)) => {
            eprintln!("brlock: {message}");
            ExitCode::from(code)
        }
    }
}
