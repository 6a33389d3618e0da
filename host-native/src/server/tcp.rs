//! TCP: one task per connection reads record-marked calls; a writer task sends replies as they come
//! back from the core task, in whatever order. An oversized or unframeable record closes this
//! connection only.

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
    shared.metrics.open_connections.inc();
    debug!(%peer, "connection opened");
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let write_task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
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
            on_record(&shared, &record, peer, Transport::Tcp, &reply_to);
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
