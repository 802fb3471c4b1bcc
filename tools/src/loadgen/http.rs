//! A minimal blocking HTTP/1.1 client (std `TcpStream`), enough for WHIP/WHEP: one
//! request per connection, `Content-Length` or chunked response bodies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

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
    /// Header fields in order (names as sent).
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

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body. `Ok(None)`: incomplete.
fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>, HttpError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..eol])
            .map_err(|_| HttpError::Malformed("chunk size not text"))?;
        let hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| HttpError::Malformed("chunk size"))?;
        if size > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        data = &data[eol + 2..];
        if size == 0 {
            // Trailer section ends with an empty line; accept its absence at EOF too.
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        data = &data[size + 2..];
    }
}

/// Parses a response from `data`. `Ok(None)` when more bytes are needed (`eof` false);
/// at `eof` a body without framing ends with the data.
pub fn parse_response(data: &[u8], eof: bool) -> Result<Option<HttpResponse>, HttpError> {
    let Some(head_end) = find(data, b"\r\n\r\n") else {
        return if eof {
            Err(HttpError::Malformed("incomplete header"))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&data[..head_end])
        .map_err(|_| HttpError::Malformed("header not text"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or(HttpError::Malformed("bad status"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without colon"))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let body = &data[head_end + 4..];
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return match dechunk(body)? {
            Some(b) => {
                resp.body = b;
                Ok(Some(resp))
            }
            None if eof => Err(HttpError::Malformed("truncated chunked body")),
            None => Ok(None),
        };
    }
    let no_body = status == 204 || status == 304 || (100..200).contains(&status);
    if no_body {
        return Ok(Some(resp));
    }
    if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| HttpError::Malformed("bad content-length"))?;
        if len > MAX_RESPONSE {
            return Err(HttpError::TooLarge);
        }
        if body.len() < len {
            return if eof {
                Err(HttpError::Malformed("truncated body"))
            } else {
                Ok(None)
            };
        }
        resp.body = body[..len].to_vec();
        return Ok(Some(resp));
    }
    if eof {
        resp.body = body.to_vec();
        Ok(Some(resp))
    } else {
        Ok(None)
    }
}

/// Sends one request and reads its response (`Connection: close`).
pub fn request(
    url: &HttpUrl,
    addr: SocketAddr,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.path,
        url.host_header(),
        body.len()
    );
    for (n, v) in headers {
        req.push_str(n);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        s.set_read_timeout(Some(left))?;
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::Timeout);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE + 16 * 1024 {
            return Err(HttpError::TooLarge);
        }
        if let Some(r) = parse_response(&buf, n == 0)? {
            return Ok(r);
        }
        if n == 0 {
            return Err(HttpError::Malformed("connection closed early"));
        }
    }
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

    #[test]
    fn content_length_body() {
        let r = b"HTTP/1.1 201 Created\r\nLocation: /whip/r/3\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_response(&r[..r.len() - 1], false).unwrap(), None);
        let resp = parse_response(r, false).unwrap().unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("location"), Some("/whip/r/3"));
        assert_eq!(resp.body, b"hello");
        assert!(parse_response(&r[..r.len() - 1], true).is_err());
    }

    #[test]
    fn chunked_body() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let resp = parse_response(r, false).unwrap().unwrap();
        assert_eq!(resp.body, b"abcde");
        assert_eq!(parse_response(&r[..60], false).unwrap(), None);
        assert!(parse_response(&r[..60], true).is_err());
    }

    #[test]
    fn unframed_body_and_no_body() {
        let r = b"HTTP/1.0 200 OK\r\n\r\nrest";
        assert_eq!(parse_response(r, false).unwrap(), None);
        assert_eq!(parse_response(r, true).unwrap().unwrap().body, b"rest");
        let r = b"HTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(parse_response(r, false).unwrap().unwrap().status, 204);
    }

    #[test]
    fn malformed() {
        assert!(parse_response(b"SIP/2.0 200 OK\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200", true).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), eof: bool) {
            let _ = parse_response(&data, eof);
        }

        #[test]
        fn parse_headerish_never_panics(body in "[0-9a-f;\r\n]{0,40}", eof: bool) {
            let r = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let _ = parse_response(r.as_bytes(), eof);
        }
    }
}
