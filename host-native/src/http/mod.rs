//! brlockd's HTTP listener (`--metrics ADDR:PORT`): `/metrics` and the admin endpoints
//! (docs/operations.md, "Admin HTTP"). A minimal HTTP/1.1 server — one GET per connection, answered
//! and closed — because its clients are scrapers, `curl` and `brlock locks`, and a full HTTP stack
//! would be most of the binary's dependencies for that.
//!
//! - [`serve`]: the accept loop and one task per connection (read the head, route, write).
//! - `router.rs`: [`Router`], path → handler. `routes.rs`: brlockd's routes, one line each.
//! - `query.rs`: query parameters, checked against what an endpoint takes.
//! - `admin.rs`: the admin endpoints' handlers (the data comes from `server::admin`).
//!
//! A response is either whole ([`Body::Full`], with its length) or a stream of chunks
//! ([`Body::Stream`], e.g. Server-Sent Events: written as they come, the connection closed when
//! the sender is dropped). A stream's receiver is dropped — so its producer's sends fail and it
//! learns the reader is gone — when the client closes the connection (noticed even while no chunk
//! flows), or a write does not complete within [`WRITE_TIMEOUT`]. A producer should send through
//! a bounded channel with `try_send`, so that a slow reader is dropped rather than waited for.

pub mod admin;
pub mod query;
pub mod router;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub use router::Router;
pub use routes::{HttpContext, routes};

/// The largest request head read; a longer one is answered 431.
pub const MAX_HEAD_BYTES: usize = 8192;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one write (the head, a whole body, one chunk of a stream) may take: a client that
/// stops reading is dropped after this.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string (not percent-decoded: no route needs it).
    pub path: String,
    /// The raw query string after `?` (see `query::Params`).
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a response carries.
#[derive(Debug)]
pub enum Body {
    Full(Vec<u8>),
    /// Chunks written as they arrive; the response ends when the sender is dropped.
    Stream(mpsc::Receiver<Vec<u8>>),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides Content-Type, Content-Length and Connection.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: Body::Full(body.into()),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `value` as compact JSON (pipe it to `jq` to read it), with a final newline.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self::new(status, JSON, body)
            }
            Err(e) => Self::error(500, format!("cannot encode the answer as JSON: {e}")),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        #[derive(Serialize)]
        struct Error {
            error: String,
        }
        Self::json(
            status,
            &Error {
                error: message.into(),
            },
        )
    }

    /// A body streamed from `chunks` (e.g. Server-Sent Events, `text/event-stream`).
    pub fn stream(content_type: &'static str, chunks: mpsc::Receiver<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type,
            headers: vec![("Cache-Control", "no-cache".into())],
            body: Body::Stream(chunks),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The status line and headers.
    fn head(&self) -> String {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type
        );
        if let Body::Full(body) = &self.body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Connections served at once (streamed bodies included); more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 128;

/// Serves `router` on `listener` until the task is aborted: one task per connection, at most
/// [`MAX_CONNECTIONS`] at once. Accept errors (EMFILE when descriptors run out) back off rather
/// than spin (issue 13, row 9; `server/accept_backoff.rs`).
pub async fn serve(listener: TcpListener, router: Arc<Router>) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = crate::server::accept_backoff::AcceptBackoff::default();
    loop {
        let Ok(permit) = open.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) =
            crate::server::accept_backoff::accept_with_backoff(&listener, &mut backoff, "http")
                .await;
        let router = router.clone();
        tokio::spawn(async move {
            connection(stream, router).await;
            drop(permit);
        });
    }
}

/// Reads one request head, answers it and closes. A client that sends nothing within
/// [`HEAD_TIMEOUT`] or closes early gets nothing.
async fn connection(mut stream: TcpStream, router: Arc<Router>) {
    let response = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => match parse_head(&head) {
            Ok(request) => router.respond(request).await,
            Err(response) => response,
        },
        Ok(Err(HeadError::TooLong)) => Response::error(
            431,
            format!("the request head is longer than {MAX_HEAD_BYTES} bytes"),
        ),
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    write_response(&mut stream, response).await;
}

enum HeadError {
    Closed,
    TooLong,
}

/// Reads up to the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(HeadError::TooLong);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The request line and headers of `head` (without the final blank line); a 400 if they are not
/// HTTP/1.x.
fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::error(400, format!("not an HTTP/1.1 request: {why}"));
    let text = std::str::from_utf8(head).map_err(|_| bad("the head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the request line is not METHOD TARGET VERSION"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("the version is not HTTP/1.x"));
    }
    if !target.starts_with('/') {
        return Err(bad("the target is not a path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("a header line without ':'"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    })
}

/// Writes `bytes` within [`WRITE_TIMEOUT`]; false if the client is gone or too slow.
async fn write(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

async fn write_response(stream: &mut TcpStream, response: Response) {
    if !write(stream, response.head().as_bytes()).await {
        return;
    }
    match response.body {
        Body::Full(body) => {
            if !write(stream, &body).await {
                return;
            }
        }
        Body::Stream(mut chunks) => {
            let (mut reader, mut writer) = stream.split();
            let mut ignored = [0u8; 256];
            loop {
                tokio::select! {
                    chunk = chunks.recv() => match chunk {
                        Some(chunk) => {
                            let written =
                                tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&chunk)).await;
                            if !matches!(written, Ok(Ok(()))) {
                                return;
                            }
                        }
                        None => break,
                    },
                    // The client sends nothing after its request: end of file means it closed.
                    read = reader.read(&mut ignored) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            return;
                        }
                    }
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse_into_method_path_query_and_headers() {
        let r =
            parse_head(b"GET /locks?file=ab&limit=2 HTTP/1.1\r\nHost: x\r\nAccept:  */* ").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/locks");
        assert_eq!(r.query, "file=ab&limit=2");
        assert_eq!(r.header("accept"), Some("*/*"));
        assert_eq!(r.header("HOST"), Some("x"));
        assert_eq!(parse_head(b"GET / HTTP/1.0").unwrap().query, "");
    }

    #[test]
    fn malformed_heads_are_400_with_a_reason() {
        for head in [
            &b"GET /x"[..],
            b"GET /x HTTP/1.1 extra",
            b"GET /x SPDY/3",
            b"GET http://x/ HTTP/1.1",
            b"GET /x HTTP/1.1\r\nno colon",
            b"GET /\xff HTTP/1.1",
            b"",
        ] {
            let response = parse_head(head).unwrap_err();
            assert_eq!(response.status, 400, "{head:?}");
        }
    }

    #[test]
    fn a_whole_body_has_its_length_and_a_stream_has_none() {
        let response = Response::json(200, &[1, 2]);
        let head = response.head();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
        let Body::Full(body) = &response.body else {
            panic!("a whole body")
        };
        assert_eq!(body, b"[1,2]\n");
        assert!(head.contains("Content-Length: 6\r\n"), "{head}");
        let (_tx, rx) = mpsc::channel(1);
        let head = Response::stream("text/event-stream", rx).head();
        assert!(!head.contains("Content-Length"), "{head}");
        assert!(head.contains("Cache-Control: no-cache\r\n"), "{head}");
    }

    /// A real connection: a whole answer, a streamed one, a 431 and a silent client.
    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .get("/hello", |_| async { Response::text(200, "hi") })
            .get("/stream", |_| async {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    for chunk in ["a", "b", "c"] {
                        let _ = tx.send(chunk.as_bytes().to_vec()).await;
                    }
                });
                Response::stream("text/event-stream", rx)
            });
        let server = tokio::spawn(serve(listener, Arc::new(router)));
        let get = |request: Vec<u8>| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&request).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let hello = get(b"GET /hello HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(
            hello.starts_with("HTTP/1.1 200 OK\r\n") && hello.ends_with("\r\n\r\nhi"),
            "{hello}"
        );
        let stream = get(b"GET /stream HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(stream.ends_with("\r\n\r\nabc"), "{stream}");
        // Exactly as long as the server reads: nothing unread, so no reset hides the answer.
        let mut long = b"GET /hello HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD_BYTES, b'x');
        let too_long = get(long).await;
        assert!(too_long.starts_with("HTTP/1.1 431 "), "{too_long}");
        let missing = get(b"GET /nope HTTP/1.1\r\n\r\n".to_vec()).await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        server.abort();
    }

    /// A client that closes a stream while nothing flows: the producer learns it at once.
    #[tokio::test]
    async fn a_stream_whose_reader_leaves_closes_its_channel() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (producer_tx, producer_rx) = tokio::sync::oneshot::channel();
        let producer = std::sync::Mutex::new(Some(producer_tx));
        let router = Router::new().get("/quiet", move |_| {
            let (tx, rx) = mpsc::channel::<Vec<u8>>(1);
            if let Some(p) = producer.lock().unwrap().take() {
                let _ = p.send(tx);
            }
            async move { Response::stream("text/event-stream", rx) }
        });
        let server = tokio::spawn(serve(listener, Arc::new(router)));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /quiet HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let tx = producer_rx.await.unwrap();
        let mut head = [0u8; 16];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK\r");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), tx.closed())
            .await
            .expect("the receiver is dropped once the client is gone");
        server.abort();
    }
}
