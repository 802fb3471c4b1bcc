//! The loadgen's blocking HTTP client for WHIP/WHEP: `ureq` (one request per
//! connection, a deadline for the whole exchange, no redirects, no proxies, a bounded
//! response), plus the small `http://` URL type the signalling code passes around.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Largest response we accept (headers and body).
const MAX_RESPONSE: usize = 1 << 20;

/// HTTP client errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("bad url {0:?}: {1}")]
    BadUrl(String, &'static str),
    /// The host did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The target is not a loopback address (and remote targets were not allowed).
    #[error("{0} is not a loopback address (pass --allow-remote to allow it)")]
    NotLoopback(SocketAddr),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No complete response before the deadline.
    #[error("timed out")]
    Timeout,
    /// The response does not parse.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// The response exceeds the size limit.
    #[error("response too large")]
    TooLarge,
    /// Any other failure of the HTTP exchange.
    #[error("http: {0}")]
    Client(String),
}

impl From<ureq::Error> for HttpError {
    fn from(e: ureq::Error) -> HttpError {
        match e {
            ureq::Error::Timeout(_) => HttpError::Timeout,
            ureq::Error::Io(e) => HttpError::Io(e),
            ureq::Error::BodyExceedsLimit(_) | ureq::Error::LargeResponseHeader(..) => {
                HttpError::TooLarge
            }
            ureq::Error::Protocol(_) => HttpError::Malformed("not an HTTP/1.1 response"),
            e => HttpError::Client(e.to_string()),
        }
    }
}

/// A parsed `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 by default).
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(s: &str) -> Result<HttpUrl, HttpError> {
        let bad = |why| HttpError::BadUrl(s.to_string(), why);
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed ["))?;
            let host = &v6[..end];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => 80,
                None => return Err(bad("junk after ]")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        Ok(HttpUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `http://host:port` (no path).
    pub fn origin(&self) -> String {
        format!("http://{}", self.host_header())
    }

    /// Resolves the host; with `loopback_only`, refuses any non-loopback address.
    pub fn resolve(&self, loopback_only: bool) -> Result<SocketAddr, HttpError> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|_| HttpError::Resolve(self.host.clone()))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| HttpError::Resolve(self.host.clone()))?;
        if loopback_only && let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(HttpError::NotLoopback(*a));
        }
        Ok(first)
    }

    /// Resolves a `Location` (absolute `http://` URL or absolute path) against this URL.
    pub fn join(&self, location: &str) -> Result<HttpUrl, HttpError> {
        if location.starts_with("http://") {
            HttpUrl::parse(location)
        } else if location.starts_with('/') {
            Ok(HttpUrl {
                host: self.host.clone(),
                port: self.port,
                path: location.to_string(),
            })
        } else {
            Err(HttpError::BadUrl(
                location.to_string(),
                "relative locations must start with /",
            ))
        }
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header fields in order (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request to `addr` (the URL's host, already resolved and checked) and
/// reads its response, all within `timeout`.
///
/// # Errors
/// See [`HttpError`].
pub fn request(
    url: &HttpUrl,
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    // Connect to the address that was resolved (and checked against --allow-remote),
    // not to whatever the name resolves to now; `Host` still names the URL's host.
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{}", url.path))
        .header("Host", url.host_header())
        .header("Connection", "close");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let bad = |e: ureq::http::Error| HttpError::Client(e.to_string());
    let resp = if body.is_empty() && !matches!(method, "POST" | "PUT" | "PATCH") {
        agent.run(req.body(()).map_err(bad)?)?
    } else {
        agent.run(req.body(body).map_err(bad)?)?
    };
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .into_with_config()
        .limit(MAX_RESPONSE as u64)
        .read_to_vec()?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn url_parsing() {
        let u = HttpUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        let u = HttpUrl::parse("http://localhost/whip/x?y=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 80, "/whip/x?y=1")
        );
        let u = HttpUrl::parse("http://[::1]:9/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.host_header(), "[::1]:9");
        assert!(HttpUrl::parse("https://x").is_err());
        assert!(HttpUrl::parse("http://").is_err());
        assert!(HttpUrl::parse("http://h:notaport/").is_err());
        assert!(HttpUrl::parse("http://[::1/").is_err());
    }

    #[test]
    fn join_locations() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/whip/room").unwrap();
        assert_eq!(u.join("/whip/room/7").unwrap().path, "/whip/room/7");
        assert_eq!(u.join("/whip/room/7").unwrap().port, 8080);
        assert_eq!(u.join("http://127.0.0.2:1/z").unwrap().host, "127.0.0.2");
        assert!(u.join("room/7").is_err());
    }

    #[test]
    fn loopback_check() {
        let u = HttpUrl::parse("http://127.0.0.1:1/").unwrap();
        assert!(u.resolve(true).is_ok());
        let u = HttpUrl::parse("http://192.0.2.1:1/").unwrap();
        assert!(matches!(u.resolve(true), Err(HttpError::NotLoopback(_))));
        assert!(u.resolve(false).is_ok());
    }

    /// Serves one connection with `reply` (after reading the request head) and returns
    /// the URL and address to reach it and the request it read.
    fn one_shot(reply: Vec<u8>) -> (HttpUrl, SocketAddr, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&b[..n]);
            }
            let _ = s.write_all(&reply);
            String::from_utf8_lossy(&req).into_owned()
        });
        let url = HttpUrl::parse(&format!("http://localhost:{}/whip/r", addr.port())).unwrap();
        (url, addr, t)
    }

    #[test]
    fn content_length_body() {
        let (url, addr, t) = one_shot(
            b"HTTP/1.1 201 Created\r\nLocation: /whip/r/3\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
        );
        let hdrs = [("Content-Type", "application/sdp")];
        let resp = request(&url, addr, "POST", &hdrs, b"v=0", Duration::from_secs(5)).unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("Location"), Some("/whip/r/3"));
        assert_eq!(resp.body, b"hello");
        let sent = t.join().unwrap();
        assert!(sent.starts_with("POST /whip/r HTTP/1.1\r\n"), "{sent}");
        // The Host header names the URL's host, though the address was connected to.
        assert!(
            sent.to_ascii_lowercase()
                .contains(&format!("host: localhost:{}\r\n", addr.port())),
            "{sent}"
        );
    }

    #[test]
    fn chunked_body_and_delete() {
        let (url, addr, t) = one_shot(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
                .to_vec(),
        );
        let resp = request(&url, addr, "DELETE", &[], b"", Duration::from_secs(5)).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"abcde");
        assert!(t.join().unwrap().starts_with("DELETE /whip/r HTTP/1.1\r\n"));
    }

    #[test]
    fn errors_do_not_hang() {
        // Never answers: the deadline ends the exchange.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let url = HttpUrl::parse(&format!("http://{addr}/x")).unwrap();
        let t0 = std::time::Instant::now();
        let r = request(&url, addr, "GET", &[], b"", Duration::from_millis(300));
        assert!(matches!(r, Err(HttpError::Timeout)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(3));
        drop(l);
        // Garbage instead of HTTP.
        let (url, addr, _t) = one_shot(b"SIP/2.0 200 OK\r\n\r\n".to_vec());
        assert!(request(&url, addr, "GET", &[], b"", Duration::from_secs(5)).is_err());
        // A body over the limit.
        let mut big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE + 1
        )
        .into_bytes();
        big.resize(big.len() + MAX_RESPONSE + 1, b'a');
        let (url, addr, _t) = one_shot(big);
        let r = request(&url, addr, "GET", &[], b"", Duration::from_secs(5));
        assert!(matches!(r, Err(HttpError::TooLarge)), "{r:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn url_parse_never_panics(s in "\\PC{0,60}") {
            if let Ok(u) = HttpUrl::parse(&s) {
                let _ = u.join(&s);
                let _ = u.host_header();
            }
        }
    }
}
