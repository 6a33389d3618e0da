//! brlockd's routes: every path its HTTP listener serves, one line each (docs/operations.md,
//! "Admin HTTP", describes them).

use std::future::Future;
use std::sync::Arc;

use super::{Request, Response, Router, admin};
use tokio::sync::watch;

use crate::config::Settings;
use crate::http_events::LiveHttp;
use crate::leader::Role;
use crate::metrics::Metrics;
use crate::server::admin::CoreQueries;

/// What the handlers share; cheap to clone (each request gets a copy).
#[derive(Clone)]
pub struct HttpContext {
    pub metrics: Arc<Metrics>,
    /// The way to the task that owns the core.
    pub core: CoreQueries,
    /// The effective settings the server was started with (`/config`).
    pub settings: Arc<Settings>,
    /// `/events` and the visualiser's files (http_events.rs).
    pub live: Arc<LiveHttp>,
    /// Leader, standby or stepped down (`leader.rs`); a standby's `/readyz` is answered from it.
    pub role: watch::Receiver<Role>,
}

pub fn routes(ctx: &HttpContext) -> Router {
    let mut router = Router::new()
        .get("/metrics", with(ctx, metrics))
        .get("/locks", with(ctx, admin::locks))
        .get("/waiters", with(ctx, admin::waiters))
        .get("/wait-for", with(ctx, admin::wait_for))
        .get("/shares", with(ctx, admin::shares))
        .get("/clients", with(ctx, admin::clients))
        .get("/grace", with(ctx, admin::grace))
        .get("/config", with(ctx, admin::config))
        .get("/healthz", with(ctx, admin::healthz))
        .get("/readyz", with(ctx, admin::readyz))
        .get("/events", with(ctx, events));
    if ctx.live.serves_page() {
        // Last: any other path is a file of --web-root, or 404.
        router = router.get("/*", with(ctx, page));
    }
    router
}

/// `handler` with its own copy of the context for each request.
fn with<F, Fut>(ctx: &HttpContext, handler: F) -> impl Fn(Request) -> Fut + Send + Sync + 'static
where
    F: Fn(HttpContext, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let ctx = ctx.clone();
    move |request| handler(ctx.clone(), request)
}

/// Prometheus metrics: OpenMetrics when the scraper asks for it, else the classic text format.
async fn metrics(ctx: HttpContext, request: Request) -> Response {
    let stats = ctx.core.ask(|v| v.core.stats()).await.unwrap_or_default();
    let (body, content_type) = ctx
        .metrics
        .render_for(stats, request.header("accept").unwrap_or_default());
    Response::new(200, content_type, body)
}

/// The core's events and actions as Server-Sent Events (docs/trace-format.md, "The live stream").
async fn events(ctx: HttpContext, _request: Request) -> Response {
    ctx.live.events().await
}

/// The visualiser (`--web-root`).
async fn page(ctx: HttpContext, request: Request) -> Response {
    ctx.live.page(&request.path).await
}
