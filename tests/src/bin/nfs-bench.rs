//! `nfs-bench`: a small-file NFSv3 workload, to see what adding locking costs plain NFS traffic.
//!
//! ```text
//! nfs-bench --addr HOST:PORT --export PATH [--mount-port P] [--connections N] [--seconds S]
//!           [--size BYTES] [--server-pid PID]        (nfs-bench --help)
//! ```
//!
//! Each of N TCP connections mounts PATH (MOUNT v3 MNT, on `--mount-port`, default the NFS port as
//! nfsserve serves both there) and then, one call at a time, makes a file of its own, writes
//! `--size` bytes to it (FILE_SYNC), reads its attributes and removes it: CREATE, WRITE, GETATTR,
//! REMOVE, four calls per file. Prints files/s, calls/s, the p50/p99 latency of one file, and with
//! `--server-pid` the server's CPU time per file (utime+stime from /proc/PID/stat).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use brlock_native::rpc::{
    AcceptStat, Auth, AuthSys, CallHeader, RecordDecoder, ReplyBody, decode_reply, encode_call,
    encode_record,
};
use brlock_native::xdr::{XdrReader, XdrWriter};
use clap::Parser;

const MOUNT_PROGRAM: u32 = 100_005;
const NFS_PROGRAM: u32 = 100_003;
const MOUNTPROC3_MNT: u32 = 1;
const NFSPROC3_GETATTR: u32 = 1;
const NFSPROC3_WRITE: u32 = 7;
const NFSPROC3_CREATE: u32 = 8;
const NFSPROC3_REMOVE: u32 = 12;
const FILE_SYNC: u32 = 2;
const FHSIZE3: u32 = 64;

/// A small-file NFSv3 workload: CREATE, WRITE, GETATTR, REMOVE per file, one call at a time per
/// connection.
#[derive(Parser, Debug)]
#[command(name = "nfs-bench", version)]
struct Args {
    /// The NFS server (TCP).
    #[arg(long, value_name = "HOST:PORT")]
    addr: SocketAddr,
    /// MOUNT's port on the same host [default: --addr's port, as nfsserve serves both there].
    #[arg(long, value_name = "PORT")]
    mount_port: Option<u16>,
    /// The export's MOUNT path.
    #[arg(long, value_name = "PATH")]
    export: String,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Bytes written to each file (at most 1 MiB).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(0..=1 << 20))]
    size: u32,
    /// Report this process's CPU time per file (the server's pid).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// One TCP connection speaking ONC RPC, one call at a time.
struct RpcConn {
    stream: TcpStream,
    decoder: RecordDecoder,
    xid: u32,
    cred: Auth,
}

impl RpcConn {
    fn connect(addr: SocketAddr, id: u32) -> Result<RpcConn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(RpcConn {
            stream,
            decoder: RecordDecoder::new(),
            xid: id << 24,
            cred: Auth::Sys(AuthSys {
                stamp: id,
                machine_name: format!("nfs-bench-{id}").into_bytes(),
                uid: 0,
                gid: 0,
                gids: Vec::new(),
            }),
        })
    }

    /// Calls `program`/`procedure` (version 3) and returns the results of an accepted call.
    fn call(&mut self, program: u32, procedure: u32, args: &[u8]) -> Result<Vec<u8>, String> {
        self.xid = self.xid.wrapping_add(1);
        let header = CallHeader {
            xid: self.xid,
            program,
            version: 3,
            procedure,
            cred: self.cred.clone(),
            verf: Auth::None,
        };
        let mut record = Vec::new();
        encode_call(&header, args, &mut record).map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(record.len() + 4);
        encode_record(&record, &mut out);
        self.stream.write_all(&out).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 65536];
        loop {
            if let Some(reply) = self.decoder.next_record() {
                let reply = decode_reply(&reply).map_err(|e| e.to_string())?;
                if reply.xid != self.xid {
                    continue;
                }
                return match reply.body {
                    ReplyBody::Accepted {
                        stat: AcceptStat::Success { results },
                        ..
                    } => Ok(results),
                    other => Err(format!("call {program}/{procedure}: {other:?}")),
                };
            }
            let n = self.stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the server closed the connection".into());
            }
            self.decoder.push(&buf[..n]).map_err(|e| e.to_string())?;
        }
    }
}

fn nfs_status<'a>(results: &'a [u8], what: &str) -> Result<XdrReader<'a>, String> {
    let mut r = XdrReader::new(results);
    match r.get_u32().map_err(|e| e.to_string())? {
        0 => Ok(r),
        status => Err(format!("{what}: NFS3 status {status}")),
    }
}

fn diropargs(w: &mut XdrWriter<'_>, dir: &[u8], name: &str) -> Result<(), String> {
    w.put_opaque(dir, FHSIZE3).map_err(|e| e.to_string())?;
    w.put_string(name.as_bytes(), 255)
        .map_err(|e| e.to_string())
}

fn mount(conn: &mut RpcConn, export: &str) -> Result<Vec<u8>, String> {
    let mut args = Vec::new();
    XdrWriter::new(&mut args)
        .put_string(export.as_bytes(), 1024)
        .map_err(|e| e.to_string())?;
    let results = conn.call(MOUNT_PROGRAM, MOUNTPROC3_MNT, &args)?;
    let mut r = nfs_status(&results, "MNT")?;
    Ok(r.get_opaque(FHSIZE3).map_err(|e| e.to_string())?.to_vec())
}

/// CREATE, WRITE, GETATTR, REMOVE of one file.
fn one_file(conn: &mut RpcConn, dir: &[u8], name: &str, data: &[u8]) -> Result<(), String> {
    let mut args = Vec::new();
    let mut w = XdrWriter::new(&mut args);
    diropargs(&mut w, dir, name)?;
    w.put_u32(0); // UNCHECKED
    for _ in 0..4 {
        w.put_bool(false); // mode, uid, gid, size: not set
    }
    w.put_u32(0); // atime: DONT_CHANGE
    w.put_u32(0); // mtime: DONT_CHANGE
    let results = conn.call(NFS_PROGRAM, NFSPROC3_CREATE, &args)?;
    let mut r = nfs_status(&results, "CREATE")?;
    if !r.get_bool().map_err(|e| e.to_string())? {
        return Err("CREATE returned no file handle".into());
    }
    let fh = r.get_opaque(FHSIZE3).map_err(|e| e.to_string())?.to_vec();

    args.clear();
    let mut w = XdrWriter::new(&mut args);
    w.put_opaque(&fh, FHSIZE3).map_err(|e| e.to_string())?;
    w.put_u64(0);
    w.put_u32(data.len() as u32);
    w.put_u32(FILE_SYNC);
    w.put_opaque(data, u32::MAX).map_err(|e| e.to_string())?;
    nfs_status(&conn.call(NFS_PROGRAM, NFSPROC3_WRITE, &args)?, "WRITE")?;

    args.clear();
    XdrWriter::new(&mut args)
        .put_opaque(&fh, FHSIZE3)
        .map_err(|e| e.to_string())?;
    nfs_status(&conn.call(NFS_PROGRAM, NFSPROC3_GETATTR, &args)?, "GETATTR")?;

    args.clear();
    diropargs(&mut XdrWriter::new(&mut args), dir, name)?;
    nfs_status(&conn.call(NFS_PROGRAM, NFSPROC3_REMOVE, &args)?, "REMOVE")?;
    Ok(())
}

fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = &stat[stat.rfind(')').ok_or("no ')' in stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| "bad /proc stat".to_string())
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Ok((field(11)? + field(12)?) as f64 / ticks)
}

fn run_connection(args: &Args, id: u32, start: &Barrier) -> Result<(u64, Vec<u32>), String> {
    let mount_addr = SocketAddr::new(args.addr.ip(), args.mount_port.unwrap_or(args.addr.port()));
    let mut mconn = RpcConn::connect(mount_addr, id)?;
    let root = mount(&mut mconn, &args.export)?;
    let mut conn = RpcConn::connect(args.addr, id)?;
    let data = vec![0x5a; args.size as usize];
    start.wait();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut latencies = Vec::new();
    let mut files = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        one_file(&mut conn, &root, &format!("nfs-bench-{id}-{files}"), &data)?;
        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        files += 1;
    }
    Ok((files, latencies))
}

fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    let start = Arc::new(Barrier::new(args.connections as usize + 1));
    let workers: Vec<_> = (0..args.connections)
        .map(|id| {
            let (args, start) = (args.clone(), start.clone());
            std::thread::spawn(move || {
                let r = run_connection(&args, id + 1, &start);
                if r.is_err() {
                    // Release the others' barrier wait if this connection failed before it.
                    start.wait();
                }
                r
            })
        })
        .collect();
    start.wait();
    let cpu_before = args.server_pid.map(cpu_seconds).transpose();
    let t0 = Instant::now();
    let mut files = 0;
    let mut latencies = Vec::new();
    let mut failed = None;
    for w in workers {
        match w.join() {
            Ok(Ok((n, l))) => {
                files += n;
                latencies.extend(l);
            }
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some("a worker panicked".into()),
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    if let Some(e) = failed {
        eprintln!("nfs-bench: {e}");
        return ExitCode::FAILURE;
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let mut line = format!(
        "connections={} files/s={:.0} calls/s={:.0} p50={}us p99={}us",
        args.connections,
        files as f64 / elapsed,
        4.0 * files as f64 / elapsed,
        pct(0.5),
        pct(0.99)
    );
    if let (Some(pid), Ok(Some(before))) = (args.server_pid, cpu_before)
        && let Ok(after) = cpu_seconds(pid)
    {
        line += &format!(
            " cpu/file={:.1}us",
            (after - before) * 1e6 / (files.max(1) as f64)
        );
    }
    println!("{line}");
    ExitCode::SUCCESS
}
