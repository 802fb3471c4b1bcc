//! A deliberately small HTTP/1.1 server side: one request per connection
//! (`Connection: close`), `Content-Length` bodies only, bounded header and body sizes.
//! Enough for WHIP/WHEP and a page; not a general web server.

use std::io::{self, Read, Write};

/// Longest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;

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

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Not HTTP/1.x as we accept it: answer 400.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head exceeds [`MAX_HEAD`]: answer 431.
    #[error("request head too large")]
    HeadTooLarge,
    /// The declared body exceeds the limit: answer 413.
    #[error("body of {0} bytes exceeds the limit of {1}")]
    BodyTooLarge(usize, usize),
    /// `Transfer-Encoding` (chunked) bodies are not supported: answer 411.
    #[error("send the body with Content-Length (chunked bodies are not supported)")]
    LengthRequired,
    /// The connection closed early or failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a request head (everything up to and including the blank line).
///
/// # Errors
/// [`ReadError::Malformed`] for anything that is not a plain HTTP/1.x head.
pub fn parse_head(head: &[u8]) -> Result<(Request, Option<usize>), ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(ReadError::Malformed("empty request"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Malformed("not HTTP/1.x"));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("bad method"));
    }
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("target must be an absolute path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    let mut length = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ReadError::Malformed("header without colon"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ReadError::Malformed("bad header name"));
        }
        let name = name.to_ascii_lowercase();
        let value = value.trim().to_owned();
        if name == "content-length" {
            let n: usize = value
                .parse()
                .map_err(|_| ReadError::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(ReadError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        }
        if name == "transfer-encoding" {
            return Err(ReadError::LengthRequired);
        }
        headers.push((name, value));
    }
    Ok((
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body: Vec::new(),
        },
        length,
    ))
}

/// Reads one request: the head (at most [`MAX_HEAD`] bytes) and a body of at most
/// `max_body` bytes.
///
/// # Errors
/// See [`ReadError`].
pub fn read_request(stream: &mut impl Read, max_body: usize) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLarge);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    if head_end > MAX_HEAD {
        return Err(ReadError::HeadTooLarge);
    }
    let (head, rest) = buf.split_at(head_end);
    let (mut req, length) = parse_head(head)?;
    let length = length.unwrap_or(0);
    if length > max_body {
        return Err(ReadError::BodyTooLarge(length, max_body));
    }
    let mut body = Vec::with_capacity(length);
    body.extend_from_slice(rest.get(..length.min(rest.len())).unwrap_or_default());
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        let n = stream.read(chunk.get_mut(..want).unwrap_or_default())?;
        if n == 0 {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    req.body = body;
    Ok(req)
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (besides `Content-Length` and `Connection`, which are always written).
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

    /// Writes the response (HTTP/1.1, `Connection: close`).
    ///
    /// # Errors
    /// Socket errors.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            head.push_str(n);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_post() {
        let raw = b"POST /whip/lobby?shard=1&x HTTP/1.1\r\nHost: a\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\nEXTRA";
        let r = read_request(&mut &raw[..], 100).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/whip/lobby");
        assert_eq!(r.query_param("shard"), Some("1"));
        assert_eq!(r.query_param("x"), Some(""));
        assert_eq!(r.query_param("y"), None);
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        assert_eq!(r.body, b"v=0\r\n");
    }

    #[test]
    fn body_split_across_reads() {
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                let n = 3.min(self.0.len()).min(b.len());
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let raw = b"DELETE /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        let r = read_request(&mut Slow(raw), 100).unwrap();
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.body, b"0123456789");
    }

    #[test]
    fn rejects_bad_input() {
        let cases: [&[u8]; 6] = [
            b"GET\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ];
        for c in cases {
            assert!(
                matches!(read_request(&mut &c[..], 10), Err(ReadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let big = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        assert!(matches!(
            read_request(&mut &big[..], 10),
            Err(ReadError::BodyTooLarge(11, 10))
        ));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            read_request(&mut &chunked[..], 10),
            Err(ReadError::LengthRequired)
        ));
        let mut huge = b"GET / HTTP/1.1\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(matches!(
            read_request(&mut &huge[..], 10),
            Err(ReadError::HeadTooLarge)
        ));
        let short = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
        assert!(matches!(
            read_request(&mut &short[..], 10),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn writes_a_response() {
        let mut out = Vec::new();
        Response::text(404, "unknown room")
            .with("X-A", "1")
            .write_to(&mut out)
            .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
        assert!(s.contains("\r\nX-A: 1\r\n"));
        assert!(s.contains("\r\nContent-Length: 13\r\n"));
        assert!(s.ends_with("\r\n\r\nunknown room\n"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read_request(&mut &data[..], 64);
        }
    }
}
