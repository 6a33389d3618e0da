//! The event tap behind `GET /events`: every event the core task hands the core, with its `now` and
//! the actions it gave, for whoever watches (http_events.rs streams them as Server-Sent Events).
//!
//! Watching costs the core task nothing while nobody watches: one atomic load per event, no clone,
//! no serialisation. While someone does, each event is cloned into a shared frame once and sent on a
//! bounded broadcast channel; serialising is each subscriber's own task's work. A subscriber that
//! falls [`CAPACITY`] frames behind finds its stream ended (tokio's broadcast drops the oldest frames
//! rather than wait), so a slow reader never holds up the core.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use brlock_core::{Action, Core, Event, Instant, TraceHeader, TraceStep};
use tokio::sync::broadcast;

/// Frames a subscriber may fall behind before its stream is ended. Each frame is one event and its
/// actions (a few hundred bytes), so the channel holds at most a few hundred KiB.
pub const CAPACITY: usize = 1024;

/// One event as the core saw it and the actions it gave.
#[derive(Debug)]
pub struct Frame {
    pub step: TraceStep,
    pub actions: Vec<Action>,
}

/// What a new subscriber gets: the core's state when it subscribed (the trace header of its stream)
/// and every frame from then on, in order.
pub struct Subscription {
    pub header: TraceHeader,
    pub frames: Frames,
}

/// The receiving end of a subscription; counts itself out of the tap when dropped.
pub struct Frames {
    rx: broadcast::Receiver<Arc<Frame>>,
    watchers: Arc<AtomicUsize>,
}

/// Why a stream of frames ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The subscriber fell more than [`CAPACITY`] frames behind.
    Lagged,
    /// The core was replaced (rebuilt from the store) or the server stopped: what follows would
    /// not continue this stream's snapshot. A new subscription starts from the new core.
    Restarted,
}

impl Frames {
    /// The next frame if one is already there (to write several in one go).
    pub fn try_next(&mut self) -> Option<Result<Arc<Frame>, Ended>> {
        use broadcast::error::TryRecvError;
        match self.rx.try_recv() {
            Ok(frame) => Some(Ok(frame)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Lagged(_)) => Some(Err(Ended::Lagged)),
            Err(TryRecvError::Closed) => Some(Err(Ended::Restarted)),
        }
    }

    pub async fn next(&mut self) -> Result<Arc<Frame>, Ended> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(_) => Ended::Lagged,
            broadcast::error::RecvError::Closed => Ended::Restarted,
        })
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The core task's side: owned by it, so a subscription's snapshot and its first frame can never
/// have an event between them.
pub struct EventTap {
    tx: broadcast::Sender<Arc<Frame>>,
    watchers: Arc<AtomicUsize>,
}

impl Default for EventTap {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
            watchers: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl EventTap {
    /// Whether anyone watches: when not, the core task neither clones nor sends anything.
    pub fn watching(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// A subscription starting from `core` as it is now (asked on the core task, between two events,
    /// through `CoreQueries::ask`).
    pub fn subscribe(&self, core: &Core) -> Subscription {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Subscription {
            header: TraceHeader::from_snapshot(core),
            frames: Frames {
                rx: self.tx.subscribe(),
                watchers: self.watchers.clone(),
            },
        }
    }

    /// Sends one event (as the core got it at `now`) and its actions to every subscriber, waiting
    /// for none.
    pub fn publish(&self, now: Instant, event: Event, actions: &[Action]) {
        let frame = Arc::new(Frame {
            step: TraceStep { now, event },
            actions: actions.to_vec(),
        });
        // An error only means the last subscriber left since `watching`.
        let _ = self.tx.send(frame);
    }

    /// The core was replaced: ends every subscription (they continue another core's history).
    pub fn restart(&mut self) {
        self.tx = broadcast::channel(CAPACITY).0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brlock_core::{ClientId, Config, FileId, LockKind, OwnerId, Range, RequestId};

    fn lock(request: u64, owner: &str, wait: bool) -> Event {
        Event::Lock {
            request: RequestId(request),
            client: ClientId::from("h"),
            owner: OwnerId::from(owner),
            file: FileId::from("f"),
            range: Range::new(0, 10),
            kind: LockKind::Exclusive,
            wait,
            reclaim: false,
            cookie: vec![],
        }
    }

    /// Drives a core through the tap as the core task does.
    fn run(tap: &EventTap, core: &mut Core, now: u64, event: Event) {
        let now = Instant::from_millis(now);
        let watched = tap.watching().then(|| event.clone());
        let actions = core.step(now, event);
        if let Some(event) = watched {
            tap.publish(now, event, &actions);
        }
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_state_then_every_step_and_the_replay_agrees() {
        let tap = EventTap::default();
        let mut core = Core::new(Config::default());
        assert!(!tap.watching());
        run(&tap, &mut core, 1, lock(1, "a", false));
        let mut sub = tap.subscribe(&core);
        assert!(tap.watching());
        run(&tap, &mut core, 2, lock(2, "b", true));
        run(&tap, &mut core, 3, lock(3, "c", true));
        let mut replay = brlock_core::Replay::start(&sub.header).unwrap();
        for _ in 0..2 {
            let frame = sub.frames.next().await.unwrap();
            assert_eq!(replay.step(&frame.step).unwrap(), frame.actions);
        }
        assert_eq!(replay.core, core);
        drop(sub);
        assert!(!tap.watching());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_ended_and_the_core_never_waits() {
        let mut tap = EventTap::default();
        let mut core = Core::new(Config::default());
        let mut slow = tap.subscribe(&core);
        for i in 0..CAPACITY as u64 + 10 {
            run(&tap, &mut core, i, Event::Tick);
        }
        assert_eq!(slow.frames.next().await.unwrap_err(), Ended::Lagged);

        let mut other = tap.subscribe(&core);
        tap.restart();
        assert_eq!(other.frames.next().await.unwrap_err(), Ended::Restarted);
    }
}
