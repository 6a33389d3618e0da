//! What the metrics listener serves for watching a running brlockd: `GET /events`, the core's events
//! and actions as Server-Sent Events, and the visualiser at `/` (`--web-root`, web_assets.rs) whose
//! live mode reads them.
//!
//! A stream is a trace in the documented format (docs/trace-format.md) with its replay output
//! beside it: one `header` message (a trace header whose `snapshot` is the core's state when the
//! stream began), then for every event one `step` message (a trace step: `now` and the event) and
//! one `actions` message (`{"step":N,"actions":[…]}`, what `brlock replay` prints for step N). The
//! data lines of `header` and `step`, one per line, make a trace that `brlock replay` reproduces
//! exactly. An `end` message says why a stream stops (`lagged`, `restarted`); the page's
//! EventSource reconnects and starts again from a fresh snapshot.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use brlock_conformance::{StepOutput, write_outputs_jsonl};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::server::events::{Ended, Frame, Subscription};
use crate::web_assets::{Refused, WebRoot};

/// How many `/events` streams may be open at once; one more is answered 503. Each holds a
/// connection and up to `events::CAPACITY` frames.
pub const MAX_SUBSCRIBERS: usize = 8;
/// A write a subscriber does not take within this long ends its stream: a reader that stopped
/// reading is dropped, never waited for (the core never waits in any case, see server/events.rs).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A comment line this often on a quiet stream, so a peer that went away is noticed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Frames written in one go when a subscriber is behind.
const BATCH: usize = 256;

/// Asks the core task for a subscription (`None` once it has stopped).
pub type SubscribeSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Subscription>> + Send>> + Send + Sync>;

/// The routes of this module, shared by every connection of the listener.
pub struct LiveHttp {
    subscribe: SubscribeSource,
    web: Option<WebRoot>,
    subscribers: Arc<Semaphore>,
}

impl LiveHttp {
    pub fn new(subscribe: SubscribeSource, web_root: Option<std::path::PathBuf>) -> Self {
        Self {
            subscribe,
            web: web_root.map(WebRoot::new),
            subscribers: Arc::new(Semaphore::new(MAX_SUBSCRIBERS)),
        }
    }

    /// Whether this module answers `GET path`: `/events`, and with a web root `/` and file names
    /// (a last segment with an extension, as every file of the page has), so that the listener's
    /// other routes (`/metrics`, the admin endpoints) are never taken for files.
    pub fn serves(&self, method: &[u8], path: &[u8]) -> bool {
        let file = path == b"/"
            || path
                .rsplit(|&b| b == b'/')
                .next()
                .is_some_and(|name| name.contains(&b'.'));
        method == b"GET" && (path == b"/events" || (self.web.is_some() && file))
    }

    /// Answers one request `serves` accepted, on its own connection.
    pub async fn answer(&self, path: &[u8], mut stream: TcpStream) {
        if path == b"/events" {
            return self.events(stream).await;
        }
        let path = String::from_utf8_lossy(path);
        let found = match &self.web {
            Some(web) => web.get(&path).await,
            None => Err(Refused::NotFound),
        };
        let (status, ctype, body) = match found {
            Ok(asset) => ("200 OK", asset.content_type, asset.body),
            Err(_) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
             X-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = write(&mut stream, head.as_bytes()).await;
        let _ = write(&mut stream, &body).await;
        let _ = stream.shutdown().await;
    }

    async fn events(&self, mut stream: TcpStream) {
        let refuse = |why: &str| {
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Retry-After: 5\r\nConnection: close\r\n\r\n{why}\n",
                why.len() + 1
            )
        };
        let Ok(permit) = self.subscribers.clone().try_acquire_owned() else {
            let why = format!("too many /events subscribers (at most {MAX_SUBSCRIBERS})");
            let _ = write(&mut stream, refuse(&why).as_bytes()).await;
            return;
        };
        let Some(subscription) = (self.subscribe)().await else {
            let _ = write(&mut stream, refuse("the server is stopping").as_bytes()).await;
            return;
        };
        tracing::info!(peer = ?stream.peer_addr().ok(), "/events subscriber joined");
        let ended = stream_events(&mut stream, subscription).await;
        tracing::info!(peer = ?stream.peer_addr().ok(), reason = ended, "/events subscriber left");
        drop(permit);
    }
}

/// Writes the stream until the subscriber or the tap ends it; returns why it ended.
async fn stream_events(stream: &mut TcpStream, subscription: Subscription) -> &'static str {
    let Subscription { header, mut frames } = subscription;
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
    // A snapshot of a big core takes a while to write out: not on the runtime's async threads.
    let header = tokio::task::spawn_blocking(move || serde_json::to_string(&header)).await;
    let Ok(Ok(header)) = header else {
        return "the snapshot did not serialise";
    };
    let first = format!("{head}retry: 1000\nevent: header\ndata: {header}\n\n");
    if write(stream, first.as_bytes()).await.is_err() {
        return "write failed or timed out";
    }
    let mut step = 0u64;
    let mut out = String::new();
    loop {
        let next = tokio::select! {
            next = frames.next() => next,
            _ = tokio::time::sleep(KEEP_ALIVE) => {
                if write(stream, b": keep-alive\n\n").await.is_err() {
                    return "write failed or timed out";
                }
                continue;
            }
        };
        out.clear();
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
        if write(stream, out.as_bytes()).await.is_err() {
            return "write failed or timed out";
        }
        if let Some(why) = ended {
            let _ = stream.shutdown().await;
            return match why {
                Ended::Lagged => "fell behind",
                Ended::Restarted => "core rebuilt or server stopping",
            };
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

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_events_are_served_and_other_routes_left_alone() {
        let subscribe: SubscribeSource = Arc::new(|| Box::pin(async { None }));
        let with_web = LiveHttp::new(subscribe.clone(), Some("/nonexistent".into()));
        let without = LiveHttp::new(subscribe, None);
        for path in [
            "/",
            "/events",
            "/app.js",
            "/pkg/brlock_wasm_bg.wasm",
            "/examples/fifo.jsonl",
        ] {
            assert!(with_web.serves(b"GET", path.as_bytes()), "{path}");
        }
        for path in ["/metrics", "/locks", "/healthz", "/pkg/"] {
            assert!(!with_web.serves(b"GET", path.as_bytes()), "{path}");
        }
        assert!(!with_web.serves(b"POST", b"/events"));
        assert!(without.serves(b"GET", b"/events"));
        assert!(!without.serves(b"GET", b"/"));
    }
}
