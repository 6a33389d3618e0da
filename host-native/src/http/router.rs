//! Which handler answers which path. Adding an endpoint is one `.get(path, handler)` line in
//! `routes.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Request, Response};

/// A handler: a request in, a response out (asynchronously: it may ask the core task).
pub type Handler =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Send + Sync>;

/// Paths and their handlers. A path is matched exactly, or by prefix when it ends in `*`
/// (`/page/*` answers `/page/` and everything under it); the first route that matches wins.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<(&'static str, Handler)>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `GET path` (and, since it has no body to leave out, nothing else) with `handler`.
    pub fn get<F, Fut>(mut self, path: &'static str, handler: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        debug_assert!(path.starts_with('/'), "route {path:?} must start with /");
        self.routes
            .push((path, Arc::new(move |request| Box::pin(handler(request)))));
        self
    }

    /// The paths served, in the order they were added (for the 404 page).
    pub fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.routes.iter().map(|(p, _)| *p)
    }

    fn find(&self, path: &str) -> Option<&Handler> {
        self.routes.iter().find_map(|(route, handler)| {
            let hit = match route.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == *route,
            };
            hit.then_some(handler)
        })
    }

    /// The response to `request`: its route's, 405 for a method other than GET, 404 for a path
    /// without a route.
    pub async fn respond(&self, request: Request) -> Response {
        let Some(handler) = self.find(&request.path) else {
            let paths: Vec<&str> = self.paths().collect();
            return Response::error(
                404,
                format!(
                    "no such path {:?}; served: {}",
                    request.path,
                    paths.join(", ")
                ),
            );
        };
        if request.method != "GET" {
            return Response::error(
                405,
                format!("{} is not allowed here; use GET", request.method),
            )
            .with_header("Allow", "GET");
        }
        handler(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
        }
    }

    fn body(response: &Response) -> String {
        match &response.body {
            super::super::Body::Full(b) => String::from_utf8_lossy(b).into_owned(),
            super::super::Body::Stream(_) => panic!("a stream"),
        }
    }

    #[tokio::test]
    async fn routes_match_exactly_or_by_prefix_and_others_are_404_or_405() {
        let router = Router::new()
            .get("/a", |_| async { Response::text(200, "a") })
            .get("/page/*", |r: Request| async move {
                Response::text(200, r.path)
            });
        assert_eq!(body(&router.respond(request("GET", "/a")).await), "a");
        assert_eq!(
            body(&router.respond(request("GET", "/page/x/y.js")).await),
            "/page/x/y.js"
        );
        let missing = router.respond(request("GET", "/a/")).await;
        assert_eq!(missing.status, 404);
        assert!(
            body(&missing).contains("served: /a, /page/*"),
            "{}",
            body(&missing)
        );
        let post = router.respond(request("POST", "/a")).await;
        assert_eq!(post.status, 405);
        assert!(post.headers.contains(&("Allow", "GET".into())));
    }
}
