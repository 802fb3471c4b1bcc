//! The demo's HTTP transport: hyper's HTTP/1.1 server on a small tokio runtime, with the
//! limits a server reachable from pages and local clients needs, and the request and
//! response types the routes use.
//!
//! Limits, all per connection unless said otherwise:
//! - the whole request head must arrive within `read_timeout` (hyper's header-read
//!   timeout: a deadline for the head, not a per-`read` timeout), and the body within
//!   another `read_timeout`; a connection lives at most [`CONNECTION_LIFETIME`] longer;
//! - a head over [`MAX_HEAD`] bytes or with over [`MAX_HEADERS`] fields gets `431`;
//! - a body over `max_body` gets `413`, declared (`Content-Length`, refused before any
//!   of it is read) or streamed (chunked, refused once it passes the limit); nothing is
//!   reserved from a declared length;
//! - at most `max_connections` connections are served at once (further ones wait in the
//!   kernel's backlog), and at most `max_in_flight` requests run their (blocking) route
//!   at once, each on tokio's blocking pool;
//! - one request per connection (`Connection: close`);
//! - `Host` must name an IP address, `localhost` or an entry of `allowed_hosts` (else
//!   `421`): a page that rebinds its own DNS name to this address cannot talk to it;
//! - a request with an `Origin` that is neither this server's own origin nor in
//!   `allowed_origins` gets no CORS permission, and unless it is a `GET`/`HEAD` it is
//!   refused with `403` before it reaches a route.
//!
//! Failing `accept` (e.g. `EMFILE`) backs off instead of spinning.

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

/// Longest request head (request line + headers) accepted: longer ones get `431`.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header fields accepted in a request: more get `431`.
pub const MAX_HEADERS: usize = 64;

/// How much longer than its two read deadlines a connection may live (time for the
/// route, e.g. an engine creating a session, and for writing the answer).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// How much of a refused body is read (and dropped) before answering, so the client
/// reads the answer instead of a reset.
const DRAIN_MAX: usize = 4 << 20;
/// How long that draining may take.
const DRAIN_TIME: Duration = Duration::from_millis(500);
/// How long a request waits for a free route slot before `503`.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);
/// How long the acceptor pauses after a failed `accept`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ... (as sent; methods are case-sensitive).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), empty when absent.
    pub query: String,
    /// Headers in order; names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name` (no percent-decoding: the demo's parameters
    /// are plain tokens).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (besides `Content-Length` and `Connection`, which the server writes).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of the given content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A plain-text response (errors carry their reason this way).
    pub fn text(status: u16, reason: impl std::fmt::Display) -> Response {
        Response::new(status, "text/plain; charset=utf-8", format!("{reason}\n"))
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        match serde_json::to_vec_pretty(value) {
            Ok(body) => Response::new(status, "application/json", body),
            Err(e) => Response::text(500, format!("cannot serialise: {e}")),
        }
    }

    /// A response without a body.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The transport's limits and allow-lists.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Deadline for the whole request head, and again for the whole body.
    pub read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Requests whose route runs at once.
    pub max_in_flight: usize,
    /// Origins (`scheme://host[:port]`) besides the server's own allowed to use the API
    /// from a page; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Host names besides IP addresses and `localhost` the server answers for; `*`
    /// allows any.
    pub allowed_hosts: Vec<String>,
}

/// The application: a blocking function from request to response.
pub type App = Arc<dyn Fn(Request) -> Response + Send + Sync>;

struct Ctx {
    policy: Policy,
    app: App,
    in_flight: Arc<Semaphore>,
}

/// A running HTTP server (its own thread and runtime).
pub struct Server {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Serves `listener` with `app` under `policy` on a new thread.
    ///
    /// # Errors
    /// When the runtime or its thread cannot be created.
    pub fn start(listener: std::net::TcpListener, policy: Policy, app: App) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(policy.max_in_flight.max(1))
            .thread_name("demo-http-route")
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            in_flight: Arc::new(Semaphore::new(policy.max_in_flight.max(1))),
            policy,
            app,
        });
        let thread = std::thread::Builder::new()
            .name("demo-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, ctx, stopped).await,
                        Err(e) => eprintln!("rtc-demo: cannot serve HTTP: {e}"),
                    }
                });
                // Connections still open are dropped; routes still running get a moment.
                rt.shutdown_timeout(Duration::from_secs(5));
            })?;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops open connections and joins the server thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    /// Dropping without [`Server::stop`] leaves the server running (as the demo's
    /// server always did): the stop channel is kept open for the detached thread.
    fn drop(&mut self) {
        if self.thread.is_some() {
            std::mem::forget(self.stop.clone());
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    mut stopped: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(ctx.policy.max_connections.max(1)));
    let mut failures = 0u64;
    loop {
        let permit = tokio::select! {
            _ = stopped.changed() => return,
            p = Arc::clone(&conns).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = stopped.changed() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: the connection stays queued; retrying at
                // once would spin. Say so now and then, not per attempt.
                if failures.is_power_of_two() {
                    eprintln!("rtc-demo: accept failed ({failures} times so far): {e}");
                }
                failures += 1;
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, ctx).await;
        });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let lifetime = ctx.policy.read_timeout * 2 + CONNECTION_LIFETIME;
    let c = Arc::clone(&ctx);
    let svc = service_fn(move |req| {
        let c = Arc::clone(&c);
        async move { Ok::<_, Infallible>(handle(&c, req).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.policy.read_timeout)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(lifetime, conn).await;
}

/// What a request's `Origin` may do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cors {
    /// No `Origin` (not a cross-origin browser request): `*`.
    NoOrigin,
    /// Own or allowed origin: echoed.
    Allowed(String),
    /// Foreign origin: no CORS headers; only `GET`/`HEAD` are served.
    Denied,
}

async fn handle(ctx: &Ctx, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let policy = &ctx.policy;
    let Some(host) = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        drain(body).await;
        return finish(
            Response::text(400, "a Host header is required"),
            &Cors::Denied,
        );
    };
    if !host_allowed(host, &policy.allowed_hosts) {
        drain(body).await;
        return finish(
            Response::text(
                421,
                format!("this server does not answer for host {host:?} (see --allow-host)"),
            ),
            &Cors::Denied,
        );
    }
    let cors = match parts.headers.get(header::ORIGIN).map(HeaderValue::to_str) {
        None => Cors::NoOrigin,
        Some(Ok(o)) if origin_allowed(o, host, &policy.allowed_origins) => {
            Cors::Allowed(o.to_owned())
        }
        Some(_) => Cors::Denied,
    };
    if cors == Cors::Denied && parts.method != Method::GET && parts.method != Method::HEAD {
        drain(body).await;
        return finish(
            Response::text(
                403,
                "pages of this origin may not use this server (see --allow-origin)",
            ),
            &cors,
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > policy.max_body as u64) {
        drain(body).await;
        return finish(too_large(policy.max_body), &cors);
    }
    let body = match tokio::time::timeout(policy.read_timeout, collect(body, policy.max_body)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(BodyError::TooLarge)) => return finish(too_large(policy.max_body), &cors),
        Ok(Err(BodyError::Broken)) => {
            return finish(Response::text(400, "malformed request body"), &cors);
        }
        Err(_) => {
            return finish(
                Response::text(408, "the request body did not arrive in time"),
                &cors,
            );
        }
    };
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let slot =
        tokio::time::timeout(IN_FLIGHT_WAIT, Arc::clone(&ctx.in_flight).acquire_owned()).await;
    let Ok(Ok(permit)) = slot else {
        return finish(
            Response::text(503, "too many requests in progress; retry").with("Retry-After", "1"),
            &cors,
        );
    };
    let app = Arc::clone(&ctx.app);
    let resp = match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        app(request)
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Response::text(500, "the request handler failed"),
    };
    finish(resp, &cors)
}

fn too_large(max: usize) -> Response {
    Response::text(413, format!("the body exceeds the limit of {max} bytes"))
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body of at most `max` bytes; memory grows with what arrives.
async fn collect(mut body: Incoming, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyError::Broken)?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max {
                drain(body).await;
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Reads and drops what the client is still sending (bounded in bytes and time).
async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async move {
        let mut n = 0usize;
        while n < DRAIN_MAX {
            match body.frame().await {
                Some(Ok(f)) => n += f.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    })
    .await;
}

/// The host name of a `Host` value (without port; IPv6 without brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether the server answers for `host`: IP literals (a DNS-rebinding page cannot
/// send one), `localhost`, or an allowed name.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host_name(host);
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(name) || a.eq_ignore_ascii_case(host))
}

/// Whether a page of `origin` may use the API of the server reached as `host`: its own
/// origin, or one allowed.
pub fn origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    let own = |scheme: &str| {
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
    };
    own("http://")
        || own("https://")
        || allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

fn finish(resp: Response, cors: &Cors) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(resp.body)));
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = out.headers_mut();
    for (n, v) in resp.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::try_from(v),
        ) {
            h.append(n, v);
        }
    }
    let allow = match cors {
        Cors::NoOrigin => Some(HeaderValue::from_static("*")),
        Cors::Allowed(o) => HeaderValue::from_str(o).ok(),
        Cors::Denied => None,
    };
    if let Some(allow) = allow {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, ETag, Link, X-Session-Id, X-Shard, Accept-Post"),
        );
    }
    // Answers differ by Origin: caches must not hand one origin's answer to another.
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let r = Request {
            method: "POST".into(),
            path: "/whip/lobby".into(),
            query: "shard=1&x".into(),
            headers: vec![("content-type".into(), "application/sdp".into())],
            body: Vec::new(),
        };
        assert_eq!(r.query_param("shard"), Some("1"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("y"), None);
        assert_eq!(r.header("content-type"), Some("application/sdp"));
    }

    #[test]
    fn hosts() {
        let none: Vec<String> = Vec::new();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]:8080",
            "[::1]",
            "localhost:1",
            "LOCALHOST",
            "10.0.0.7:80",
        ] {
            assert!(host_allowed(ok, &none), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "",
        ] {
            assert!(!host_allowed(bad, &none), "{bad}");
        }
        let some = vec!["demo.example".to_owned()];
        assert!(host_allowed("demo.example:8080", &some));
        assert!(!host_allowed("evil.example", &some));
        assert!(host_allowed("evil.example", &["*".to_owned()]));
    }

    #[test]
    fn origins() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            &none
        ));
        assert!(origin_allowed(
            "https://localhost:8080",
            "localhost:8080",
            &none
        ));
        assert!(!origin_allowed(
            "http://127.0.0.1:8081",
            "127.0.0.1:8080",
            &none
        ));
        assert!(!origin_allowed(
            "http://evil.example",
            "127.0.0.1:8080",
            &none
        ));
        assert!(!origin_allowed("null", "127.0.0.1:8080", &none));
        let some = vec!["https://app.example/".to_owned()];
        assert!(origin_allowed(
            "https://app.example",
            "127.0.0.1:8080",
            &some
        ));
        assert!(!origin_allowed(
            "http://app.example",
            "127.0.0.1:8080",
            &some
        ));
        assert!(origin_allowed("http://x", "h", &["*".to_owned()]));
    }

    fn policy() -> Policy {
        Policy {
            max_body: 1024,
            read_timeout: Duration::from_secs(5),
            max_connections: 8,
            max_in_flight: 2,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }

    fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_until_stopped_and_survives_drop() {
        let app: App = Arc::new(|r: Request| Response::text(200, r.path));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = Server::start(l, policy(), app.clone()).unwrap();
        let out = get(addr, "/a?b");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n/a\n"), "{out}");
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
        server.stop();
        assert!(std::net::TcpStream::connect(addr).is_err());

        // Dropped without stop(): still serving.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(Server::start(l, policy(), app).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert!(get(addr, "/x").starts_with("HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn cors_headers() {
        let r = finish(Response::empty(204), &Cors::NoOrigin);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let r = finish(
            Response::empty(204),
            &Cors::Allowed("https://a.example".into()),
        );
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        assert_eq!(r.headers()["vary"], "Origin");
        let r = finish(Response::text(403, "no"), &Cors::Denied);
        assert!(r.headers().get("access-control-allow-origin").is_none());
        assert_eq!(r.status(), 403);
    }
}
