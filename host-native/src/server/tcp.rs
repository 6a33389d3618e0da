//! TCP: one task per connection reads record-marked calls; a writer task sends replies as they come
//! back from the core task, in whatever order, those that are ready in one write. An oversized or
//! unframeable record closes this connection only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::Shared;
use super::intake::{ReplyTo, on_record};
use super::outbound::Transport;
use crate::rpc::RecordDecoder;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let stop_conn = stop.clone();
    loop {
        tokio::select! {
            _ = super::stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(stream, peer, shared.clone(), stop_conn.clone()));
                }
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    // Each connection stops reading and finishes the replies it owes.
    while connections.join_next().await.is_some() {}
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream
        .local_addr()
        .map_or_else(|_| shared.config.listen.ip(), |a| a.ip());
    shared.metrics.open_connections.inc();
    debug!(%peer, "connection opened");
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let gate = shared.gate.clone();
    let write_task = tokio::spawn(async move {
        // Every reply that is ready goes out in one write: a client that pipelines its calls
        // gets one segment per burst instead of one syscall (and one wake-up of its own) per reply.
        let mut ready = Vec::with_capacity(64);
        let mut out = Vec::with_capacity(16 * 1024);
        while rx.recv_many(&mut ready, 256).await > 0 {
            out.clear();
            for bytes in ready.drain(..) {
                out.extend_from_slice(&bytes);
            }
            // The leadership gate, checked at the moment of sending: a leader paused past its
            // lease (SIGSTOP) wakes with replies queued here, and none of them may leave.
            if !gate.is_open() {
                debug!(%peer, "replies dropped: the leadership lease has run out");
                break;
            }
            if writer.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    let reply_to = ReplyTo::Tcp(tx);
    let mut decoder = RecordDecoder::with_max_record(shared.config.max_record_bytes);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            _ = super::stopped(&mut stop) => break,
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let pushed = decoder.push(&buf[..n]);
        while let Some(record) = decoder.next_record() {
            on_record(&shared, &record, peer, local, Transport::Tcp, &reply_to);
        }
        if let Err(e) = pushed {
            info!(%peer, error = %e, "closing connection");
            break;
        }
    }
    // The writer ends once every reply this connection owes is out (their senders are dropped), or
    // when the client goes away; bounded so a stuck client cannot hold up shutdown.
    drop(reply_to);
    let _ = tokio::time::timeout(Duration::from_secs(10), write_task).await;
    shared.metrics.open_connections.dec();
    debug!(%peer, "connection closed");
}
