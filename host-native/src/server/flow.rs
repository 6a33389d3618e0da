//! Backpressure from the sockets to the core (issue 13, row 1). Two bounds, each a semaphore:
//!
//! - **Calls in flight** ([`CallsInFlight`], `--max-calls-in-flight`): every NLM call handed to the
//!   core task holds a permit in its `CallCtx` until the context is dropped (its reply is out, or it
//!   was refused). The core's queue, its table of requests waiting for a reply and the persist
//!   batches behind them are therefore bounded by it. A TCP reader waits for a permit (TCP flow
//!   control then pushes back on that client); a UDP datagram that finds none is dropped (the client
//!   retransmits).
//! - **Unsent replies per TCP connection** ([`TcpReplies`], `--max-pipelined-calls`): a connection's
//!   reader takes a permit per record and its writer gives it back once the reply is written, so a
//!   client that pipelines calls without reading the replies stops being read after that many; its
//!   replies wait in a channel of exactly that capacity.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tracing::debug;

/// The server-wide bound on NLM calls in the core task's hands.
#[derive(Clone, Debug)]
pub(crate) struct CallsInFlight(Arc<Semaphore>);

impl CallsInFlight {
    pub(crate) fn new(max: usize) -> Self {
        CallsInFlight(Arc::new(Semaphore::new(max.max(1))))
    }

    /// Waits for room (TCP: the reader stops reading meanwhile).
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().acquire_owned().await.ok()
    }

    /// Room now, or `None` (UDP: the datagram is dropped).
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }

    #[cfg(test)]
    fn used(&self, max: usize) -> usize {
        max.max(1) - self.0.available_permits()
    }
}

/// The reply side of one TCP connection: a channel to its writer with room for every reply the
/// connection may owe, and the count of records read whose reply is not written yet.
#[derive(Clone, Debug)]
pub struct TcpReplies {
    tx: mpsc::Sender<Vec<u8>>,
    unsent: Arc<Semaphore>,
    max: usize,
}

/// The writer's end: the replies to write, and where to say they are written.
#[derive(Debug)]
pub(crate) struct ReplyQueue {
    rx: mpsc::Receiver<Vec<u8>>,
    unsent: Arc<Semaphore>,
}

impl ReplyQueue {
    /// Waits for replies and moves up to `limit` of them into `ready`; 0 once the connection's
    /// senders are all gone.
    pub(crate) async fn recv_many(&mut self, ready: &mut Vec<Vec<u8>>, limit: usize) -> usize {
        self.rx.recv_many(ready, limit).await
    }

    /// The writer wrote `n` replies.
    pub(crate) fn written(&self, n: usize) {
        self.unsent.add_permits(n);
    }
}

impl TcpReplies {
    /// The sender for a connection that may owe `max` replies, and its writer's queue.
    pub(crate) fn new(max: usize) -> (TcpReplies, ReplyQueue) {
        let max = max.max(1);
        let (tx, rx) = mpsc::channel(max);
        let unsent = Arc::new(Semaphore::new(max));
        let queue = ReplyQueue {
            rx,
            unsent: unsent.clone(),
        };
        (TcpReplies { tx, unsent, max }, queue)
    }

    /// The reader's turn: waits until fewer than `max` replies are owed, then counts one more.
    /// Cancel-safe (nothing is counted if the wait is dropped).
    pub(crate) async fn owe_one(&self) {
        if let Ok(permit) = self.unsent.acquire().await {
            permit.forget();
        }
    }

    /// A record read turned out to need no reply (a dropped duplicate, an unreadable header).
    pub(crate) fn owe_none(&self) {
        self.unsent.add_permits(1);
    }

    /// Whether replies are owed (the connection is busy, not idle).
    pub(crate) fn owes(&self) -> bool {
        self.unsent.available_permits() < self.max
    }

    /// Queues a framed reply. The channel has room for every reply owed, so it is never full while
    /// the writer runs; once the connection is gone the reply is dropped.
    pub(crate) fn send(&self, framed: Vec<u8>) {
        if let Err(e) = self.tx.try_send(framed) {
            debug!(error = %e, "TCP reply dropped: the connection is gone");
            self.unsent.add_permits(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_owes_at_most_max_replies() {
        let (replies, mut queue) = TcpReplies::new(2);
        replies.owe_one().await;
        replies.owe_one().await;
        assert!(replies.owes());
        // A third record waits until a reply is written.
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), replies.owe_one());
        assert!(third.await.is_err());
        replies.send(b"r1".to_vec());
        let mut ready = Vec::new();
        assert_eq!(queue.recv_many(&mut ready, 8).await, 1);
        assert_eq!(ready, vec![b"r1".to_vec()]);
        queue.written(1);
        replies.owe_one().await;
        replies.owe_none();
        queue.written(1);
        assert!(!replies.owes());
        // Once every sender is gone the writer's queue ends.
        drop(replies);
        assert_eq!(queue.recv_many(&mut ready, 8).await, 0);
    }

    #[test]
    fn calls_in_flight_are_released_with_their_permit() {
        let calls = CallsInFlight::new(1);
        let permit = calls.try_acquire().expect("room for one");
        assert!(calls.try_acquire().is_none());
        assert_eq!(calls.used(1), 1);
        drop(permit);
        assert!(calls.try_acquire().is_some());
    }
}
