//! TCP: one task per connection reads record-marked calls; a writer task sends replies as they come
//! back from the core task, in whatever order, those that are ready in one write. An oversized or
//! unframeable record closes this connection only.
//!
//! Bounds (issue 13, rows 1–3; see `flow.rs` and `connections.rs`): at most `--max-connections`
//! connections (the longest-idle one makes room for a new client); a connection that owes
//! `--max-pipelined-calls` replies is not read until its client reads them; a connection with
//! nothing read or written for `--idle-timeout` is closed, and so is one that leaves a record
//! unfinished for `--record-deadline` or whose partial record would take the bytes held in partial
//! records over `--max-partial-record-bytes`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

use super::connections::{Admission, ConnectionHandle};
use super::flow::TcpReplies;
use super::intake::{ReplyTo, on_record};
use super::outbound::Transport;
use super::shared::Shared;
use crate::rpc::RecordDecoder;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let stop_conn = stop.clone();
    let mut backoff = super::accept_backoff::AcceptBackoff::default();
    loop {
        tokio::select! {
            _ = super::shared::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    match shared.connections.admit(peer, Instant::now()) {
                        Admission::Admitted(handle) => {
                            connections.spawn(connection(stream, peer, handle, shared.clone(), stop_conn.clone()));
                        }
                        Admission::Full => {
                            info!(%peer, "connection refused: --max-connections reached and none is idle");
                            drop(stream);
                        }
                    }
                }
                // EMFILE and the like: wait before trying again rather than spin.
                Err(e) => backoff.failed(&e, "NLM (tcp)").await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Each connection stops reading and finishes the replies it owes.
    while connections.join_next().await.is_some() {}
}

/// Milliseconds since `epoch`, for the writer to note its last write where the reader sees it.
fn millis_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handle: ConnectionHandle,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .map_or_else(|_| shared.config.listen.ip(), |a| a.ip());
    shared.metrics.open_connections.inc();
    debug!(%peer, "connection opened");
    let limits = &shared.config.connection_limits;
    let (mut reader, mut writer) = stream.into_split();
    let (replies, mut queue) = TcpReplies::new(limits.max_pipelined_calls);
    let epoch = Instant::now();
    let last_write = Arc::new(AtomicU64::new(0));
    let gate = shared.gate.clone();
    let write_task = {
        let last_write = last_write.clone();
        tokio::spawn(async move {
            // Every reply that is ready goes out in one write: a client that pipelines its calls
            // gets one segment per burst instead of one syscall (and one wake-up of its own) per
            // reply.
            let mut ready = Vec::with_capacity(64);
            let mut out = Vec::with_capacity(16 * 1024);
            while queue.recv_many(&mut ready, 256).await > 0 {
                let n = ready.len();
                // One reply (a client with one call in flight) is written as it is; several are
                // gathered into one buffer first.
                let bytes: &[u8] = if n == 1 {
                    &ready[0]
                } else {
                    out.clear();
                    for reply in &ready {
                        out.extend_from_slice(reply);
                    }
                    &out
                };
                // The leadership gate, checked at the moment of sending: a leader paused past its
                // lease (SIGSTOP) wakes with replies queued here, and none of them may leave.
                if !gate.is_open() {
                    debug!(%peer, "replies dropped: the leadership lease has run out");
                    break;
                }
                if writer.write_all(bytes).await.is_err() {
                    break;
                }
                ready.clear();
                queue.written(n);
                last_write.store(millis_since(epoch), Ordering::Relaxed);
            }
            let _ = writer.shutdown().await;
        })
    };
    let reply_to = ReplyTo::Tcp(replies.clone());
    let mut decoder = RecordDecoder::with_max_record(shared.config.max_record_bytes);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_read = Instant::now();
    // When the record being read began (None between records).
    let mut record_started: Option<Instant> = None;
    let mut partial = 0usize;
    // A complete record waiting for the connection to owe fewer replies; nothing is read meanwhile.
    let mut waiting: Option<Vec<u8>> = None;
    let mut framing_failed = false;
    // One timer for both deadlines, re-armed only when it fires (activity since then moves the
    // idle deadline on) or when a record starts: not a timer operation per read.
    let timer = tokio::time::sleep_until((last_read + limits.idle_timeout).into());
    tokio::pin!(timer);
    // Kept across iterations: a fresh `Notified` per read would register with the table's notify
    // each time.
    let close_signal = handle.close_signal();
    let closed = close_signal.notified();
    tokio::pin!(closed);
    let why = loop {
        if waiting.is_none() {
            waiting = decoder.next_record();
        }
        if waiting.is_none() && framing_failed {
            break "unframeable record";
        }
        tokio::select! {
            _ = super::shared::stopped(&mut stop) => break "server stopping",
            _ = &mut closed => break "making room for a new connection",
            _ = &mut timer => {
                let now = Instant::now();
                if record_started.is_some_and(|s| now >= s + limits.record_deadline) {
                    break "record not finished within --record-deadline";
                }
                let idle_until = {
                    let wrote = epoch + Duration::from_millis(last_write.load(Ordering::Relaxed));
                    last_read.max(wrote) + limits.idle_timeout
                };
                // Nothing read or written for so long: gone, or not reading its replies.
                if now >= idle_until {
                    break "nothing read or written for --idle-timeout";
                }
                let next = match record_started {
                    Some(started) => idle_until.min(started + limits.record_deadline),
                    None => idle_until,
                };
                timer.as_mut().reset(next.into());
            }
            _ = replies.owe_one(), if waiting.is_some() => {
                let record = waiting.take().expect("checked");
                if !on_record(&shared, &record, peer, local, Transport::Tcp, &reply_to).await {
                    replies.owe_none();
                }
                handle.active(Instant::now(), true);
            }
            read = reader.read(&mut buf), if waiting.is_none() && !framing_failed => {
                let n = match read {
                    Ok(0) | Err(_) => break "closed by the client",
                    Ok(n) => n,
                };
                last_read = Instant::now();
                if let Err(e) = decoder.push(&buf[..n]) {
                    info!(%peer, error = %e, "closing connection after the records before the bad one");
                    framing_failed = true;
                }
                // Whole records (the usual case) leave nothing partial: no shared counter to touch.
                let now_partial = decoder.partial_len();
                if now_partial != partial {
                    let within_cap = shared.partial_bytes.change(partial, now_partial);
                    partial = now_partial;
                    if !within_cap {
                        break "partial records over --max-partial-record-bytes";
                    }
                }
                record_started = match (decoder.is_mid_record(), record_started) {
                    (true, None) => {
                        let due = last_read + limits.record_deadline;
                        if tokio::time::Instant::from(due) < timer.deadline() {
                            timer.as_mut().reset(due.into());
                        }
                        Some(last_read)
                    }
                    (true, started) => started,
                    (false, _) => None,
                };
                handle.active(last_read, record_started.is_some() || replies.owes());
            }
        }
    };
    debug!(%peer, why, "closing connection");
    let bound = match why {
        "making room for a new connection" => Some("max_connections"),
        "record not finished within --record-deadline" => Some("record_deadline"),
        "nothing read or written for --idle-timeout" => Some("idle_timeout"),
        "partial records over --max-partial-record-bytes" => Some("max_partial_record_bytes"),
        _ => None,
    };
    if let Some(reason) = bound {
        shared
            .metrics
            .connections_closed
            .get_or_create(&crate::metrics::ClosedLabels { reason })
            .inc();
    }
    shared.partial_bytes.change(partial, 0);
    drop(decoder);
    drop(handle);
    // The writer ends once every reply this connection owes is out (their senders are dropped), or
    // when the client goes away; bounded so a stuck client cannot hold up shutdown.
    drop(reply_to);
    drop(replies);
    let abort = write_task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(10), write_task)
        .await
        .is_err()
    {
        // The client reads nothing: drop its unsent replies with the socket.
        abort.abort();
    }
    shared.metrics.open_connections.dec();
    debug!(%peer, "connection closed");
}
