//! What brlockd's HTTP listener serves for watching a running server: `GET /events`, the core's
//! events and actions as Server-Sent Events, and the visualiser at `/` (`--web-root`,
//! web_assets.rs) whose live mode reads them. The routes are in `http/routes.rs`.
//!
//! A stream is a trace in the documented format (docs/trace-format.md, "The live stream") with its
//! replay output beside it: one `header` message (a trace header whose `snapshot` is the core's
//! state when the stream began), then for every event one `step` message (a trace step: `now` and
//! the event) and one `actions` message (`{"step":N,"actions":[…]}`, what `brlock replay` prints for
//! step N). The data lines of `header` and `step`, one per line, make a trace that `brlock replay`
//! reproduces exactly. An `end` message says why a stream stops (`lagged`, `restarted`); the page's
//! EventSource reconnects and starts again from a fresh snapshot.

use std::sync::Arc;
use std::time::Duration;

use brlock_conformance::{StepOutput, write_outputs_jsonl};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::http::Response;
use crate::server::admin::{CoreQueries, CoreView};
use crate::server::events::{Ended, Frame, Subscription};
use crate::web_assets::WebRoot;

/// How many `/events` streams may be open at once; one more is answered 503. Each holds a
/// connection, up to `events::CAPACITY` frames and up to [`CHUNKS`] written-out chunks.
pub const MAX_SUBSCRIBERS: usize = 8;
/// Chunks (each one or more events) waiting for the connection's writer. A subscriber whose
/// writer has this many waiting is not keeping up and its stream is ended: it is dropped, never
/// waited for (and the core never waits in any case, see server/events.rs). The writer itself
/// gives up on a write that takes `http::WRITE_TIMEOUT`.
pub const CHUNKS: usize = 64;
/// A comment line this often on a quiet stream, so a peer that went away is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames written in one chunk when a subscriber is behind.
const BATCH: usize = 256;

/// The `/events` and page handlers' shared state.
pub struct LiveHttp {
    /// The way to the core task; a subscription is taken there between two events.
    core: CoreQueries,
    web: Option<WebRoot>,
    subscribers: Arc<Semaphore>,
}

impl LiveHttp {
    pub fn new(core: CoreQueries, web_root: Option<std::path::PathBuf>) -> Self {
        Self {
            core,
            web: web_root.map(WebRoot::new),
            subscribers: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        }
    }

    /// Whether `--web-root` was given (the page's routes exist only then).
    pub fn serves_page(&self) -> bool {
        self.web.is_some()
    }

    /// `GET /events`: a stream that starts from the core's state now.
    pub async fn events(&self) -> Response {
        let Ok(permit) = self.subscribers.clone().try_acquire_owned() else {
            return Response::error(
                503,
                format!("too many /events subscribers (at most {MAX_SUBSCRIBERS})"),
            )
            .with_header("Retry-After", "5");
        };
        let subscribe = |view: &CoreView<'_>| view.tap.subscribe(view.core);
        let Some(subscription) = self.core.ask(subscribe).await else {
            return Response::error(
                503,
                "no core to follow: a standby, or the server is stopping",
            );
        };
        let (tx, rx) = mpsc::channel(CHUNKS);
        tokio::spawn(produce(subscription, tx, permit));
        Response::stream("text/event-stream", rx).with_header("X-Accel-Buffering", "no")
    }

    /// A file of the page (`/` is `index.html`).
    pub async fn page(&self, path: &str) -> Response {
        let Some(web) = &self.web else {
            return Response::error(404, "no --web-root: the visualiser is not served here");
        };
        match web.get(path).await {
            Ok(asset) => Response::new(200, asset.content_type, asset.body)
                .with_header("X-Content-Type-Options", "nosniff")
                .with_header("Cache-Control", "no-cache"),
            Err(_) => Response::error(
                404,
                format!("no such path {path:?}: neither an endpoint nor a file of --web-root"),
            ),
        }
    }
}

/// Writes one subscription into `tx` until the subscriber or the tap ends it.
async fn produce(
    subscription: Subscription,
    tx: mpsc::Sender<Vec<u8>>,
    permit: OwnedSemaphorePermit,
) {
    let ended = stream(subscription, &tx).await;
    tracing::info!(reason = ended, "/events subscriber left");
    drop(permit);
}

async fn stream(subscription: Subscription, tx: &mpsc::Sender<Vec<u8>>) -> &'static str {
    const GONE: &str = "closed by the subscriber";
    const SLOW: &str = "fell behind (its connection did not take the stream)";
    let Subscription { header, mut frames } = subscription;
    tracing::info!("/events subscriber joined");
    // A snapshot of a big core takes a while to write out: not on the runtime's async threads.
    let header = tokio::task::spawn_blocking(move || serde_json::to_string(&header)).await;
    let Ok(Ok(header)) = header else {
        return "the snapshot did not serialise";
    };
    let first = format!("retry: 1000\nevent: header\ndata: {header}\n\n");
    if tx.try_send(first.into_bytes()).is_err() {
        return GONE;
    }
    let mut step = 0u64;
    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            _ = tx.closed() => return GONE,
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                match tx.try_send(b": keep-alive\n\n".to_vec()) {
                    Ok(()) => continue,
                    Err(mpsc::error::TrySendError::Full(_)) => return SLOW,
                    Err(mpsc::error::TrySendError::Closed(_)) => return GONE,
                }
            }
        };
        let mut out = String::new();
        let mut ended = None;
        let mut next = Some(next);
        for _ in 0..BATCH {
            match next.take().or_else(|| frames.try_next()) {
                Some(Ok(frame)) => {
                    step += 1;
                    message(&mut out, step, &frame);
                }
                Some(Err(why)) => {
                    ended = Some(why);
                    break;
                }
                None => break,
            }
        }
        if let Some(why) = ended {
            let reason = match why {
                Ended::Lagged => "lagged",
                Ended::Restarted => "restarted",
            };
            out.push_str(&format!(
                "event: end\ndata: {{\"reason\":\"{reason}\"}}\n\n"
            ));
        }
        match tx.try_send(out.into_bytes()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return SLOW,
            Err(mpsc::error::TrySendError::Closed(_)) => return GONE,
        }
        match ended {
            Some(Ended::Lagged) => return "fell behind (more than events::CAPACITY events)",
            Some(Ended::Restarted) => return "core rebuilt or server stopping",
            None => {}
        }
    }
}

/// The `step` and `actions` messages of step `n`.
fn message(out: &mut String, n: u64, frame: &Frame) {
    let step = serde_json::to_string(&frame.step).expect("a step always serialises");
    let actions = write_outputs_jsonl(&[StepOutput {
        step: n,
        actions: frame.actions.clone(),
    }]);
    out.push_str("event: step\ndata: ");
    out.push_str(&step);
    out.push_str("\n\nevent: actions\ndata: ");
    out.push_str(actions.trim_end());
    out.push_str("\n\n");
}
