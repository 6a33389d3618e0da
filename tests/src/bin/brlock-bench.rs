//! `brlock-bench`: an NLM v4 load generator for brlockd or any other NLM server.
//!
//! ```text
//! brlock-bench --addr 127.0.0.1:PORT [--connections N] [--seconds S] [--server-pid PID]
//!              [--fh TEXT|hex:…]
//! ```
//!
//! Each of N TCP connections is its own lock owner (caller_name `bench-N`, svid N, oh
//! `bench-N`). It first takes one extra lock that it holds for the whole run, so a server
//! that monitors a client host on its first lock and forgets it on its last (NFS-Ganesha
//! with statd) does not make a statd round trip per pair. Then it loops: LOCK exclusive of
//! its own 10-byte range, UNLOCK it, one call at a time. Owners never conflict.
//!
//! Prints LOCK+UNLOCK pairs per second, the p50/p99 latency of one pair, and with
//! `--server-pid` the server's CPU time (utime+stime from /proc/PID/stat, before and after).
//! `--fh` is the file handle to lock (default `bench-file`); servers that only accept handles
//! they issued (Ganesha) need a real one, e.g. from `conformance/rpcgen/fh_lookup.py`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use brlock_native::nlm::{NlmVersion, Stat};
use brlock_tests::client::{NlmClient, Owner, Transport};
use brlock_tests::script::bytes_arg;

struct Args {
    addr: SocketAddr,
    connections: u32,
    seconds: u64,
    server_pid: Option<u32>,
    fh: Vec<u8>,
}

const USAGE: &str = "usage: brlock-bench --addr HOST:PORT [--connections N] [--seconds S] \
                     [--server-pid PID] [--fh TEXT|hex:…]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        connections: 1,
        seconds: 10,
        server_pid: None,
        fh: b"bench-file".to_vec(),
    };
    let mut have_addr = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => {
                args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?;
                have_addr = true;
            }
            "--connections" => {
                args.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?;
            }
            "--seconds" => {
                args.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--server-pid" => {
                args.server_pid = Some(value()?.parse().map_err(|e| format!("--server-pid: {e}"))?);
            }
            "--fh" => args.fh = bytes_arg(&value()?).map_err(|e| format!("--fh: {e}"))?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if !have_addr {
        return Err(format!("--addr is required\n{USAGE}"));
    }
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    Ok(args)
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
    latencies_us: Vec<u32>,
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
        errors: 0,
        first_error: None,
    };
    let owner = Owner::new(&format!("bench-{n}"), n, &format!("bench-{n}"));
    let fh = &args.fh;
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
    let offset = u64::from(n) * 100;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let lock = c.lock(&owner, fh, true, offset, 10, false);
        let unlock = c.unlock(&owner, fh, offset, 10);
        let dt = t0.elapsed();
        match (lock, unlock) {
            (Ok(Stat::Granted), Ok(Stat::Granted)) => {
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
    let _ = c.unlock(&owner, fh, held_offset, 1);
    out
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("brlock-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let args = Arc::new(args);
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
    let pairs = latencies.len() as u64;
    let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
    let rate = pairs as f64 / elapsed;
    println!(
        "brlock-bench: addr={} connections={} seconds={:.1} fh={} bytes",
        args.addr,
        args.connections,
        elapsed,
        args.fh.len()
    );
    println!(
        "pairs={pairs} pairs/s={rate:.0} p50={}us p99={}us errors={errors}",
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
