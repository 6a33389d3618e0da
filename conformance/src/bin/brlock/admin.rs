//! `brlock locks` and `brlock graph`: a running brlockd's locks, waiters and wait-for graph, read
//! from its admin HTTP endpoints (`brlockd --metrics ADDR:PORT`; docs/operations.md, "Admin HTTP").

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::Failure;

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 listed, 1 the server cannot be reached or refused the \
                        query, 2 bad arguments."
)]
pub struct LocksArgs {
    /// brlockd's HTTP listener (its --metrics address), e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR:PORT")]
    server: String,
    /// Only this file: its handle in hex, as listed.
    #[arg(long, value_name = "HEX")]
    file: Option<String>,
    /// Only this owner: caller_name/svid/oh, or caller_name/svid for all its ohs.
    #[arg(long, value_name = "OWNER")]
    owner: Option<String>,
    /// Only this client host (its caller_name).
    #[arg(long, value_name = "NAME")]
    client: Option<String>,
    /// At most this many locks and this many waiters [default: the server's, 10000].
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Print the server's answers as JSON, `{"locks": …, "waiters": …}`, instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
#[command(
    after_help = "Exit codes: 0 printed, 1 the server cannot be reached or refused the \
                        query, 2 bad arguments."
)]
pub struct GraphArgs {
    /// brlockd's HTTP listener (its --metrics address), e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR:PORT")]
    server: String,
    /// At most this many edges [default: the server's, 10000].
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

/// How long to wait for brlockd to accept, and then for its whole answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (100,000 rows, the server's maximum, are ~40 MB of JSON).
const MAX_ANSWER_BYTES: u64 = 256 << 20;

/// `GET path` from brlockd's HTTP listener: the JSON of a 200 answer, else an error naming the
/// cause. Plain `std::net`: brlockd answers one request per connection, with a Content-Length,
/// and closes, so a request line and a read to the end is all the HTTP needed; a client crate
/// would bring TLS, pools and a resolver this does not use.
fn get(server: &str, path: &str) -> Result<Value, Failure> {
    let failure = |message: String| Failure(message, 1);
    let server = server
        .strip_prefix("http://")
        .unwrap_or(server)
        .trim_end_matches('/');
    let addrs: Vec<_> = server
        .to_socket_addrs()
        .map_err(|e| failure(format!("cannot resolve {server}: {e} (write ADDR:PORT)")))?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        let why = last.map_or_else(|| "no address".into(), |e| io_text(&e));
        failure(format!("cannot connect to {server}: {why}"))
    })?;
    let io = |e: std::io::Error| failure(format!("{server}: {}", io_text(&e)));
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let not_http = || {
        failure(format!(
            "{server} did not answer HTTP (is it brlockd's --metrics address, not its NLM port?)"
        ))
    };
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(not_http)?;
    let head = String::from_utf8_lossy(&answer[..split]);
    let status: u16 = head
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(not_http)?;
    let body: Result<Value, _> = serde_json::from_slice(&answer[split + 4..]);
    match (status, body) {
        (200, Ok(value)) => Ok(value),
        (200, Err(e)) => Err(failure(format!("{server}{path}: not JSON: {e}"))),
        (_, Ok(Value::Object(error))) if error.contains_key("error") => Err(failure(format!(
            "{server}{path}: {status}: {}",
            error["error"].as_str().unwrap_or_default()
        ))),
        (_, _) => Err(failure(format!("{server}{path}: HTTP status {status}"))),
    }
}

/// An I/O error as a person reads it: "connection refused", not "Connection refused (os error 111)".
fn io_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        // A read timeout shows as EAGAIN.
        TimedOut | WouldBlock => "timed out".into(),
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | HostUnreachable
        | NetworkUnreachable | AddrNotAvailable | PermissionDenied) => kind.to_string(),
        _ => e.to_string(),
    }
}

/// `?name=value&…` of the parameters given, percent-encoded.
fn query(params: &[(&str, Option<String>)]) -> String {
    let encoded: Vec<String> = params
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}={}", encode(value.as_deref()?))))
        .collect();
    if encoded.is_empty() {
        String::new()
    } else {
        format!("?{}", encoded.join("&"))
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(row: &Value, key: &str) -> String {
    match &row[key] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A wait in ms as a person reads it: `850ms`, `12.5s`, `3m07s`, `2h05m`.
fn duration_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", ms / 1000, ms % 1000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// Rows of the table, held locks then waiters per file, and whether either list was cut short.
fn table(locks: &Value, waiters: &Value) -> String {
    let mut by_file: BTreeMap<String, Vec<[String; 7]>> = BTreeMap::new();
    let row = |r: &Value, state: String| {
        [
            text(r, "file"),
            text(r, "owner"),
            text(r, "client"),
            text(r, "kind"),
            text(r, "start"),
            text(r, "end"),
            state,
        ]
    };
    for lock in locks["locks"].as_array().into_iter().flatten() {
        // An older brlockd says nothing of how long a lock has been held.
        let held = match lock["held_ms"].as_u64() {
            Some(ms) => format!("held {}", duration_text(ms)),
            None => "held".to_string(),
        };
        let state = if lock["unreclaimed"] == Value::Bool(true) {
            format!("{held}, not reclaimed yet")
        } else {
            held
        };
        by_file
            .entry(text(lock, "file"))
            .or_default()
            .push(row(lock, state));
    }
    for waiter in waiters["waiters"].as_array().into_iter().flatten() {
        let state = format!(
            "waiting {} (#{} in queue)",
            duration_text(waiter["waiting_ms"].as_u64().unwrap_or_default()),
            text(waiter, "position")
        );
        by_file
            .entry(text(waiter, "file"))
            .or_default()
            .push(row(waiter, state));
    }
    let header = ["FILE", "OWNER", "CLIENT", "KIND", "START", "END", "STATE"].map(String::from);
    let rows: Vec<&[String; 7]> = std::iter::once(&header)
        .chain(by_file.values().flatten())
        .collect();
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            // START and END right-aligned, as numbers are.
            let cell = match i {
                4 | 5 => format!("{cell:>w$}", w = widths[i]),
                6 => cell.clone(),
                _ => format!("{cell:<w$}", w = widths[i]),
            };
            line.push_str(&cell);
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn print(text: &str) -> Result<(), Failure> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure(format!("stdout: {e}"), 1))
}

fn warn_truncated(what: &str, answer: &Value) {
    if answer["truncated"] == Value::Bool(true) {
        eprintln!(
            "brlock: only the first {} {what} are shown; more match (filter, or raise --limit)",
            answer["limit"]
        );
    }
}

pub fn locks(args: LocksArgs) -> Result<(), Failure> {
    let q = query(&[
        ("file", args.file),
        ("owner", args.owner),
        ("client", args.client),
        ("limit", args.limit.map(|n| n.to_string())),
    ]);
    let locks = get(&args.server, &format!("/locks{q}"))?;
    let waiters = get(&args.server, &format!("/waiters{q}"))?;
    if args.json {
        let both = serde_json::json!({ "locks": locks, "waiters": waiters });
        let text = serde_json::to_string_pretty(&both).expect("a Value serialises");
        return print(&format!("{text}\n"));
    }
    warn_truncated("locks", &locks);
    warn_truncated("waiters", &waiters);
    print(&table(&locks, &waiters))
}

/// `text` as a DOT string literal.
fn dot_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An owner as a graph node: `caller_name/svid/oh`, with the client in front when the owner's text
/// does not already start with it (an owner of another protocol).
fn node(end: &Value) -> String {
    let (client, owner) = (text(end, "client"), text(end, "owner"));
    if owner.starts_with(&format!("{client}/")) {
        owner
    } else {
        format!("{client}: {owner}")
    }
}

/// A long file handle shortened for an edge label (the full one is in `/wait-for`).
fn short_file(hex: &str) -> String {
    if hex.len() > 16 {
        format!("{}…", &hex[..12])
    } else {
        hex.to_string()
    }
}

fn dot(graph: &Value) -> String {
    let mut out = String::from(
        "// brlockd's wait-for graph: an edge from a waiting owner to an owner it waits for;\n\
         // red edges are on a cycle.\ndigraph wait_for {\n  node [shape=box];\n",
    );
    for edge in graph["edges"].as_array().into_iter().flatten() {
        let label = format!(
            "file {} (waiter {})",
            short_file(&text(edge, "file")),
            text(edge, "waiter")
        );
        let style = if edge["in_cycle"] == Value::Bool(true) {
            ", color=red, penwidth=2"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} -> {} [label={}{style}];\n",
            dot_string(&node(&edge["from"])),
            dot_string(&node(&edge["to"])),
            dot_string(&label)
        ));
    }
    if graph["truncated"] == Value::Bool(true) {
        out.push_str(&format!("  // only the first {} edges\n", graph["limit"]));
    }
    out.push_str("}\n");
    out
}

pub fn graph(args: GraphArgs) -> Result<(), Failure> {
    let q = query(&[("limit", args.limit.map(|n| n.to_string()))]);
    let graph = get(&args.server, &format!("/wait-for{q}"))?;
    warn_truncated("edges", &graph);
    print(&dot(&graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded_and_absent_parameters_left_out() {
        assert_eq!(query(&[("file", None)]), "");
        assert_eq!(
            query(&[
                ("owner", Some("host a/7/oh+1".into())),
                ("file", None),
                ("limit", Some("5".into()))
            ]),
            "?owner=host%20a%2F7%2Foh%2B1&limit=5"
        );
    }

    #[test]
    fn the_table_lists_each_files_locks_then_its_waiters() {
        let locks = serde_json::json!({"locks": [
            {"file": "66", "client": "a", "owner": "a/1/oh", "kind": "exclusive", "start": "0", "end": "EOF", "unreclaimed": false, "held_ms": 3_723_000},
        ]});
        let waiters = serde_json::json!({"waiters": [
            {"file": "66", "client": "b", "owner": "b/2/oh", "kind": "shared", "start": "10", "end": "19", "position": 1, "waiting_ms": 12_500},
        ]});
        assert_eq!(
            table(&locks, &waiters),
            "FILE  OWNER   CLIENT  KIND       START  END  STATE\n\
             66    a/1/oh  a       exclusive      0  EOF  held 1h02m\n\
             66    b/2/oh  b       shared        10   19  waiting 12.5s (#1 in queue)\n"
        );
    }

    #[test]
    fn the_graph_is_dot_with_cycle_edges_marked() {
        let graph = serde_json::json!({"edges": [
            {"waiter": 3, "file": "0011223344556677889900", "from": {"client": "a", "owner": "a/1/oh"}, "to": {"client": "b", "owner": "b/2/\"x"}, "in_cycle": true},
        ], "truncated": false, "limit": 10});
        let text = dot(&graph);
        assert!(text.contains(
            "  \"a/1/oh\" -> \"b/2/\\\"x\" [label=\"file 001122334455… (waiter 3)\", color=red, penwidth=2];\n"
        ), "{text}");
        assert!(text.starts_with("// ") && text.ends_with("}\n"));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration_text(850), "850ms");
        assert_eq!(duration_text(12_540), "12.5s");
        assert_eq!(duration_text(187_000), "3m07s");
        assert_eq!(duration_text(7_500_000), "2h05m");
    }
}
