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
use brlock_tests::client::{NlmClient, Owner, Transport, success_results};
use brlock_tests::script::bytes_arg;

struct Args {
    addr: SocketAddr,
    connections: u32,
    pipeline: u32,
    seconds: u64,
    server_pid: Option<u32>,
    fh: Vec<u8>,
}

const USAGE: &str = "usage: brlock-bench --addr HOST:PORT [--connections N] [--pipeline D] \
                     [--seconds S] [--server-pid PID] [--fh TEXT|hex:…]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        connections: 1,
        pipeline: 1,
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
            "--pipeline" => {
                args.pipeline = value()?.parse().map_err(|e| format!("--pipeline: {e}"))?;
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
    if args.pipeline == 0 || args.pipeline > 4096 {
        return Err("--pipeline must be between 1 and 4096".into());
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
            let lock = NlmCall::Lock(c.lock_args(owner, &args.fh, true, offset, 10, false));
            let cookie = c.cookie();
            let unlock = NlmCall::Unlock(UnlockArgs {
                cookie,
                lock: owner.lock(&args.fh, offset, 10),
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
    let pairs: u64 = outcomes.iter().map(|o| o.pairs).sum();
    let errors: u64 = outcomes.iter().map(|o| o.errors).sum();
    let rate = pairs as f64 / elapsed;
    println!(
        "brlock-bench: addr={} connections={} pipeline={} seconds={:.1} fh={} bytes",
        args.addr,
        args.connections,
        args.pipeline,
        elapsed,
        args.fh.len()
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
