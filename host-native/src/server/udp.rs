//! UDP: one datagram is one call; replies go back to the sender from the same socket.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::debug;

use super::intake::{ReplyTo, on_record};
use super::outbound::Transport;
use super::shared::Shared;

pub(crate) async fn serve(
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let reply_to = ReplyTo::Udp(socket.clone());
    // Unspecified on a wildcard socket: the core task works the address out when it needs it.
    let local = socket
        .local_addr()
        .map_or_else(|_| shared.config.listen.ip(), |a| a.ip());
    let mut buf = vec![0u8; 65_536];
    loop {
        tokio::select! {
            _ = super::shared::stopped(&mut stop) => break,
            received = socket.recv_from(&mut buf) => match received {
                // Never waits over UDP: a call that finds no room is dropped (`flow.rs`).
                Ok((n, peer)) => {
                    on_record(&shared, &buf[..n], peer, local, Transport::Udp, &reply_to).await;
                }
                // E.g. ICMP errors from an earlier send surface here on some systems.
                Err(e) => debug!(error = %e, "UDP receive failed"),
            },
        }
    }
}
