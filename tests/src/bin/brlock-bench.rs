//! `brlock-bench`: an NLM v4 load generator for brlockd or any other NLM server.
//!
//! ```text
//! brlock-bench --addr 127.0.0.1:PORT [--connections N] [--pipeline D] [--seconds S]
//!              [--server-pid PID] [--fh TEXT|hex:…]
//! ```
//!
//! Each of N TCP connections is its own lock owner (caller_name `bench-N`, svid N, oh
//! `bench-N`). It first takes one extra lock that it holds for the whole run, so a server
//! that monitors a client host on its first lock and forgets it on its last (NFS-Ganesha
//! with statd) does not make a statd round trip per pair. Then it loops: LOCK exclusive of
//! its own 10-byte range, UNLOCK it, one call at a time. Owners never conflict.
//!
//! With `--pipeline D` (D > 1) a connection keeps D pairs in flight, as a kernel NFS client
//! multiplexes many calls on one transport: it writes D LOCK+UNLOCK pairs (2·D calls, each pair
//! on its own range, fresh xids and cookies) in one `write`, then reads the 2·D replies, matched
//! by xid, in whatever order they come. Latency is then that of one such wave.
//!
//! Prints LOCK+UNLOCK pairs per second, the p50/p99 latency of one pair, and with
//! `--server-pid` the server's CPU time (utime+stime from /proc/PID/stat, before and after).
//! `--fh` is the file handle to lock (default `bench-file`); servers that only accept handles
//! they issued (Ganesha) need a real one, e.g. from `conformance/rpcgen/fh_lookup.py`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use brlock_native::nlm::{
    self, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Res, Stat, UnlockArgs,
};
use brlock_native::rpc::{decode_reply, encode_record};
use brlock_testkit::client::{NlmClient, Owner, Transport, success_results};
use brlock_tests::script::bytes_arg;
use clap::Parser;

/// An NLM v4 load generator: LOCK+UNLOCK pairs of non-conflicting owners, one TCP connection each.
#[derive(Parser)]
#[command(name = "brlock-bench", version)]
struct Args {
    /// The NLM server's TCP address.
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// Connections, each its own lock owner.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// LOCK+UNLOCK pairs each connection keeps in flight.
    #[arg(long, value_name = "D", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pipeline: u32,
    /// How long to run.
    #[arg(long, value_name = "S", default_value_t = 10)]
    seconds: u64,
    /// Also report this server process's CPU time (from /proc/PID/stat).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// The file handle to lock: its text, or `hex:…`.
    #[arg(long, value_name = "TEXT|hex:…", default_value = "bench-file", value_parser = file_handle)]
    fh: FileHandle,
}

/// `--fh`'s bytes (a newtype: clap reads a bare `Vec<u8>` as many values).
#[derive(Clone)]
struct FileHandle(Vec<u8>);

fn file_handle(text: &str) -> Result<FileHandle, String> {
    bytes_arg(text).map(FileHandle)
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')').ok_or("no ')' in stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields
        .get(11)
        .and_then(|f| f.parse().ok())
        .ok_or("bad utime")?;
    let stime: u64 = fields
        .get(12)
        .and_then(|f| f.parse().ok())
        .ok_or("bad stime")?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Ok((utime + stime) as f64 / ticks)
}

struct Outcome {
    /// One entry per pair (per wave when pipelined).
    latencies_us: Vec<u32>,
    pairs: u64,
    errors: u64,
    first_error: Option<String>,
}

fn run_connection(
    n: u32,
    args: &Args,
    start: &Barrier,
    ready: &Barrier,
    deadline_at: &std::sync::Mutex<Option<Instant>>,
) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::with_capacity(1 << 16),
        pairs: 0,
        errors: 0,
        first_error: None,
    };
    let owner = Owner::new(&format!("bench-{n}"), n, &format!("bench-{n}"));
    let fh = &args.fh.0;
    let fail = |out: &mut Outcome, what: String| {
        out.errors += 1;
        if out.first_error.is_none() {
            out.first_error = Some(what);
        }
    };
    let client = NlmClient::connect(Transport::Tcp, args.addr, NlmVersion::V4);
    let mut client = match client {
        Ok(c) => Some(c),
        Err(e) => {
            fail(&mut out, format!("connection {n}: {e}"));
            None
        }
    };
    // The lock held for the whole run, far from every loop range.
    let held_offset = (1 << 40) + u64::from(n) * 16;
    if let Some(c) = client.as_mut() {
        match c.lock(&owner, fh, true, held_offset, 1, false) {
            Ok(Stat::Granted) => {}
            other => fail(&mut out, format!("connection {n}: held LOCK: {other:?}")),
        }
    }
    ready.wait();
    start.wait();
    let deadline = deadline_at
        .lock()
        .unwrap()
        .expect("deadline set before start");
    let Some(c) = client.as_mut() else {
        return out;
    };
    if args.pipeline > 1 {
        pipelined(c, n, args, &owner, deadline, &mut out, &fail);
    } else {
        let offset = u64::from(n) * 100;
        while Instant::now() < deadline {
            let t0 = Instant::now();
            let lock = c.lock(&owner, fh, true, offset, 10, false);
            let unlock = c.unlock(&owner, fh, offset, 10);
            let dt = t0.elapsed();
            match (lock, unlock) {
                (Ok(Stat::Granted), Ok(Stat::Granted)) => {
                    out.pairs += 1;
                    out.latencies_us
                        .push(u32::try_from(dt.as_micros()).unwrap_or(u32::MAX));
                }
                (l, u) => {
                    fail(
                        &mut out,
                        format!("connection {n}: LOCK {l:?}, UNLOCK {u:?}"),
                    );
                    if out.errors > 100 {
                        break;
                    }
                }
            }
        }
    }
    let _ = c.unlock(&owner, fh, held_offset, 1);
    out
}

/// Waves of `args.pipeline` LOCK+UNLOCK pairs, each wave written at once and its replies read
/// back in any order.
fn pipelined(
    c: &mut NlmClient,
    n: u32,
    args: &Args,
    owner: &Owner,
    deadline: Instant,
    out: &mut Outcome,
    fail: &dyn Fn(&mut Outcome, String),
) {
    let depth = args.pipeline as usize;
    // xid → (procedure, cookie) of every call of the wave still unanswered.
    let mut pending: HashMap<u32, (NlmProc, Vec<u8>)> = HashMap::with_capacity(2 * depth);
    let mut wave = Vec::with_capacity(depth * 2 * 160);
    while Instant::now() < deadline {
        wave.clear();
        pending.clear();
        for i in 0..depth as u64 {
            let offset = u64::from(n) * 1_000_000 + i * 16;
            let lock = NlmCall::Lock(c.lock_args(owner, &args.fh.0, true, offset, 10, false));
            let cookie = c.cookie();
            let unlock = NlmCall::Unlock(UnlockArgs {
                cookie,
                lock: owner.lock(&args.fh.0, offset, 10),
            });
            for call in [lock, unlock] {
                let procedure = call.procedure();
                let body = c.encode_args(&call);
                let (xid, msg) =
                    c.rpc
                        .encode(NLM_PROGRAM, NlmVersion::V4 as u32, procedure as u32, &body);
                encode_record(&msg, &mut wave);
                let cookie = match call {
                    NlmCall::Lock(a) => a.cookie,
                    NlmCall::Unlock(a) => a.cookie,
                    _ => unreachable!("only LOCK and UNLOCK are sent"),
                };
                pending.insert(xid, (procedure, cookie));
            }
        }
        let t0 = Instant::now();
        if let Err(e) = c.rpc.send_bytes(&wave) {
            fail(out, format!("connection {n}: write: {e}"));
            return;
        }
        let mut granted = 0;
        while !pending.is_empty() {
            let record = match c.rpc.recv_record() {
                Ok(r) => r,
                Err(e) => {
                    fail(out, format!("connection {n}: read: {e}"));
                    return;
                }
            };
            let reply = match decode_reply(&record) {
                Ok(r) => r,
                Err(e) => {
                    fail(out, format!("connection {n}: bad reply: {e}"));
                    return;
                }
            };
            let Some((procedure, cookie)) = pending.remove(&reply.xid) else {
                fail(
                    out,
                    format!("connection {n}: reply to unknown xid {}", reply.xid),
                );
                continue;
            };
            let stat = success_results(reply)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    nlm::decode_reply(NlmVersion::V4, procedure, &r).map_err(|e| e.to_string())
                });
            match stat {
                Ok(NlmReply::Res(Res {
                    cookie: c,
                    stat: Stat::Granted,
                })) if c == cookie => granted += 1,
                other => fail(
                    out,
                    format!("connection {n}: {procedure:?} answered {other:?}"),
                ),
            }
        }
        let dt = t0.elapsed();
        if granted == 2 * depth {
            out.pairs += depth as u64;
            out.latencies_us
                .push(u32::try_from(dt.as_micros()).unwrap_or(u32::MAX));
        } else if out.errors > 100 {
            return;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> ExitCode {
    // Bad flags exit 2 with clap's message; --help prints to stdout and exits 0.
    let args = Arc::new(Args::parse());
    let n = args.connections as usize;
    // `ready`: every connection is open and holds its extra lock; `start`: go.
    let ready = Arc::new(Barrier::new(n + 1));
    let start = Arc::new(Barrier::new(n + 1));
    let deadline = Arc::new(std::sync::Mutex::new(None));
    let threads: Vec<_> = (1..=args.connections)
        .map(|i| {
            let (args, ready, start, deadline) = (
                Arc::clone(&args),
                Arc::clone(&ready),
                Arc::clone(&start),
                Arc::clone(&deadline),
            );
            std::thread::spawn(move || run_connection(i, &args, &start, &ready, &deadline))
        })
        .collect();
    ready.wait();
    let cpu_before = args.server_pid.map(cpu_seconds);
    let t0 = Instant::now();
    *deadline.lock().unwrap() = Some(t0 + Duration::from_secs(args.seconds));
    start.wait();
    let outcomes: Vec<Outcome> = threads
        .into_iter()
        .map(|t| t.join().expect("worker"))
        .collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_after = args.server_pid.map(cpu_seconds);

    let mut latencies: Vec<u32> = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let pairs: u64 = outcomes.iter().map(|o| o.pairs).sum();
    let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
    let rate = pairs as f64 / elapsed;
    println!(
        "brlock-bench: addr={} connections={} pipeline={} seconds={:.1} fh={} bytes",
        args.addr,
        args.connections,
        args.pipeline,
        elapsed,
        args.fh.0.len()
    );
    println!(
        "pairs={pairs} pairs/s={rate:.0} {} p50={}us p99={}us errors={errors}",
        if args.pipeline > 1 { "wave" } else { "pair" },
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    if let Some(first) = outcomes.iter().find_map(|o| o.first_error.clone()) {
        println!("first error: {first}");
    }
    match (cpu_before, cpu_after) {
        (Some(Ok(before)), Some(Ok(after))) => {
            let cpu = after - before;
            let per_pair_us = if pairs > 0 {
                cpu * 1e6 / pairs as f64
            } else {
                0.0
            };
            println!(
                "server cpu={cpu:.2}s ({:.0}% of one core) cpu/pair={per_pair_us:.1}us",
                cpu / elapsed * 100.0
            );
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => println!("server cpu: unavailable ({e})"),
        _ => {}
    }
    if pairs == 0 || errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser, error::ErrorKind};

    use super::Args;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("brlock-bench").chain(args.iter().copied()))
    }

    #[test]
    fn flags_keep_their_defaults_and_meanings() {
        Args::command().debug_assert();
        let args = parse(&["--addr", "127.0.0.1:2049"]).unwrap();
        assert_eq!(args.addr, "127.0.0.1:2049".parse().unwrap());
        assert_eq!(
            (
                args.connections,
                args.pipeline,
                args.seconds,
                args.server_pid
            ),
            (1, 1, 10, None)
        );
        assert_eq!(args.fh.0, b"bench-file");
        let args = parse(&[
            "--addr",
            "[::1]:4045",
            "--connections",
            "16",
            "--pipeline",
            "4096",
            "--seconds",
            "3",
            "--server-pid",
            "42",
            "--fh",
            "hex:00ff",
        ])
        .unwrap();
        assert_eq!(
            (
                args.connections,
                args.pipeline,
                args.seconds,
                args.server_pid
            ),
            (16, 4096, 3, Some(42))
        );
        assert_eq!(args.fh.0, [0x00, 0xff]);
    }

    #[test]
    fn help_goes_to_stdout_with_exit_0_and_bad_flags_exit_2() {
        let help = parse(&["--help"]).err().expect("--help stops parsing");
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        assert_eq!(help.exit_code(), 0);
        assert!(!help.use_stderr(), "help is printed on stdout");
        let text = help.render().to_string();
        for flag in [
            "--addr",
            "--connections",
            "--pipeline",
            "--seconds",
            "--server-pid",
            "--fh",
        ] {
            assert!(text.contains(flag), "{flag} missing from help:\n{text}");
        }
        for bad in [
            &[][..],
            &["--addr", "nowhere"],
            &["--addr", "127.0.0.1:1", "--connections", "0"],
            &["--addr", "127.0.0.1:1", "--pipeline", "0"],
            &["--addr", "127.0.0.1:1", "--pipeline", "4097"],
            &["--addr", "127.0.0.1:1", "--fh", "hex:abc"],
            &["--addr", "127.0.0.1:1", "--no-such-flag"],
        ] {
            let error = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
            assert_eq!(error.exit_code(), 2, "{bad:?}: {error}");
            assert!(error.use_stderr(), "{bad:?}");
        }
    }
}
