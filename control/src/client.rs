//! The client half: a blocking client over the Unix socket.
//!
//! [`ControlClient`] is `Send`: move it into a thread, or into
//! `tokio::task::spawn_blocking`, or [`split`](ControlClient::split) it into a
//! [`ControlRequester`] and an [`EventStream`] (a background reader thread routes
//! responses and events), which suits an async program that waits on events in one
//! task and sends requests from another.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::error::{ControlError, ErrorCode};
use crate::protocol::{
    Event, Hello, MAX_LINE, OpKind, PROTOCOL_VERSION, Request, RequestId, Response, ServerLine,
    parse_server_line,
};

/// How long [`ControlClient::connect`] waits for the hello line.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Events kept by a client while nobody reads them; older ones are dropped beyond this.
pub const CLIENT_EVENT_QUEUE: usize = 65_536;

/// Errors of a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Socket error.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
    /// The server answered with an error.
    #[error("{0}")]
    Server(ControlError),
    /// The server sent something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No answer within the timeout.
    #[error("timed out waiting for the server")]
    Timeout,
}

/// How a server line broke the protocol (the cause inside [`ClientError::Protocol`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A server line was longer than the protocol's maximum line length.
    #[error("server line too long")]
    LineTooLong,
    /// The line buffer's bookkeeping did not match its contents.
    #[error("line framing")]
    Framing,
    /// A server line was not a JSON object of the protocol.
    #[error("bad server line: {0}")]
    BadLine(#[source] serde_json::Error),
    /// A response did not have the shape of the answer to its request.
    #[error("{kind} response: {source}")]
    BadResponse {
        /// The operation the response answered.
        kind: OpKind,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

struct LineReader {
    buf: Vec<u8>,
    start: usize,
    tmp: Vec<u8>,
}

impl LineReader {
    fn new() -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            tmp: vec![0; 64 * 1024],
        }
    }

    /// Read one line (without `\n`), waiting until `deadline` (`None`: forever).
    /// A partial line read before a timeout is kept for the next call.
    fn next_line(
        &mut self,
        stream: &mut UnixStream,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut searched = self.start;
        loop {
            if let Some(rest) = self.buf.get(searched..)
                && let Some(i) = rest.iter().position(|&b| b == b'\n')
            {
                let end = searched + i;
                let line = self.buf.get(self.start..end).map(<[u8]>::to_vec);
                self.start = end + 1;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                } else if self.start > 64 * 1024 {
                    self.buf.drain(..self.start);
                    self.start = 0;
                }
                return line.ok_or(ClientError::Protocol(ProtocolViolation::Framing));
            }
            searched = self.buf.len();
            if self.buf.len() - self.start > MAX_LINE {
                return Err(ProtocolViolation::LineTooLong.into());
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout);
                    }
                    Some(left.max(Duration::from_millis(1)))
                }
            };
            stream.set_read_timeout(timeout)?;
            match stream.read(&mut self.tmp) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => {
                    let chunk = self
                        .tmp
                        .get(..n)
                        .ok_or(ClientError::Protocol(ProtocolViolation::Framing))?;
                    self.buf.extend_from_slice(chunk);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(ClientError::Timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ClientError::Closed);
                }
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
    }
}

fn parse(line: &[u8]) -> Result<ServerLine, ClientError> {
    parse_server_line(line).map_err(|e| ProtocolViolation::BadLine(e).into())
}

type ResponseResult = (Option<RequestId>, Result<serde_json::Value, ControlError>);

/// The sending half shared by [`ControlClient`] and [`ControlRequester`]: the socket,
/// the id counter and the request timeout, with the one request/response loop.
struct Requests {
    stream: UnixStream,
    next_id: u64,
    timeout: Option<Duration>,
    hello: Hello,
}

impl Requests {
    /// Send `req`, then take responses from `next` until the one for `req` arrives.
    ///
    /// `next` returns the next response addressed to this connection (its id and
    /// result), waiting at most until the deadline it is given; it is handed the socket
    /// so a client without a reader thread can read it in place.
    fn exchange(
        &mut self,
        req: &Request,
        mut next: impl FnMut(&mut UnixStream, Option<Instant>) -> Result<ResponseResult, ClientError>,
    ) -> Result<Response, ClientError> {
        let kind = req.kind();
        let id = RequestId::Num(self.next_id);
        self.next_id += 1;
        self.stream.write_all(&req.to_line(&id))?;
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            match next(&mut self.stream, deadline)? {
                (Some(rid), Ok(v)) if rid == id => {
                    return Response::from_value(kind, v)
                        .map_err(|source| ProtocolViolation::BadResponse { kind, source }.into());
                }
                (Some(rid), Err(e)) if rid == id => return Err(ClientError::Server(e)),
                // An error about the connection itself (line too long, slow consumer).
                (None, Err(e)) => return Err(ClientError::Server(e)),
                // A late response to a request that timed out earlier.
                _ => {}
            }
        }
    }
}

/// Events read by a [`ControlClient`] while it waited for a response.
struct EventQueue {
    events: VecDeque<Event>,
    dropped: u64,
}

impl EventQueue {
    fn push(&mut self, e: Event) {
        if self.events.len() >= CLIENT_EVENT_QUEUE {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(e);
    }
}

/// A blocking control client.
pub struct ControlClient {
    out: Requests,
    reader: LineReader,
    queue: EventQueue,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("hello", &self.out.hello)
            .field("queued_events", &self.queue.events.len())
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// Connect, read the hello line and check the protocol version.
    ///
    /// # Errors
    /// Socket errors; `PermissionDenied` when the server refuses our credentials;
    /// `InvalidData` for a wrong protocol version or a malformed hello;
    /// `TimedOut` when no hello arrives within [`HELLO_TIMEOUT`].
    pub fn connect(path: impl AsRef<Path>) -> io::Result<ControlClient> {
        let mut stream = UnixStream::connect(path)?;
        let mut reader = LineReader::new();
        let deadline = Instant::now() + HELLO_TIMEOUT;
        let line = reader
            .next_line(&mut stream, Some(deadline))
            .map_err(|e| match e {
                ClientError::Io(e) => e,
                ClientError::Timeout => io::Error::new(io::ErrorKind::TimedOut, "no hello"),
                ClientError::Closed => {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed before hello")
                }
                other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
            })?;
        let hello = match parse_server_line(&line) {
            Ok(ServerLine::Hello(h)) => h,
            Ok(ServerLine::Response { result: Err(e), .. }) => {
                let kind = if e.code == ErrorCode::Forbidden {
                    io::ErrorKind::PermissionDenied
                } else {
                    io::ErrorKind::ConnectionRefused
                };
                return Err(io::Error::new(kind, e.to_string()));
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "expected a hello line",
                ));
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        };
        if hello.protocol != PROTOCOL_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "server speaks control protocol {}, this client {}",
                    hello.protocol, PROTOCOL_VERSION
                ),
            ));
        }
        Ok(ControlClient {
            out: Requests {
                stream,
                next_id: 1,
                timeout: None,
                hello,
            },
            reader,
            queue: EventQueue {
                events: VecDeque::new(),
                dropped: 0,
            },
        })
    }

    /// The server's hello.
    pub fn hello(&self) -> &Hello {
        &self.out.hello
    }

    /// Limit how long [`request`](Self::request) waits for its response (default: no
    /// limit). After a timeout the late response is skipped when it arrives.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.out.timeout = timeout;
    }

    /// Send `req` and wait for its response. Events arriving meanwhile are queued for
    /// [`next_event`](Self::next_event).
    ///
    /// # Errors
    /// [`ClientError::Server`] for an error response; I/O, protocol, closed, timeout.
    pub fn request(&mut self, req: Request) -> Result<Response, ClientError> {
        let reader = &mut self.reader;
        let queue = &mut self.queue;
        self.out.exchange(&req, |stream, deadline| {
            loop {
                let line = reader.next_line(stream, deadline)?;
                match parse(&line)? {
                    ServerLine::Event(e) => queue.push(e),
                    ServerLine::Hello(_) => {}
                    ServerLine::Response { id, result } => return Ok((id, result)),
                }
            }
        })
    }

    /// The next event: a queued one, or one read within `timeout` (`None`: wait
    /// forever). `Ok(None)` on timeout.
    ///
    /// # Errors
    /// I/O, protocol, closed.
    pub fn next_event(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, ClientError> {
        if let Some(e) = self.queue.events.pop_front() {
            return Ok(Some(e));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let line = match self.reader.next_line(&mut self.out.stream, deadline) {
                Ok(l) => l,
                Err(ClientError::Timeout) => return Ok(None),
                Err(e) => return Err(e),
            };
            match parse(&line)? {
                ServerLine::Event(e) => return Ok(Some(e)),
                ServerLine::Response {
                    id: None,
                    result: Err(e),
                } => return Err(ClientError::Server(e)),
                _ => {}
            }
        }
    }

    /// Events dropped because more than [`CLIENT_EVENT_QUEUE`] were waiting.
    pub fn events_dropped(&self) -> u64 {
        self.queue.dropped
    }

    /// Split into a request half and an event stream, with a background thread reading
    /// the socket. The connection closes when both halves are dropped.
    ///
    /// # Errors
    /// When the socket cannot be cloned or the thread not started.
    pub fn split(self) -> io::Result<(ControlRequester, EventStream)> {
        let ControlClient {
            out,
            mut reader,
            queue,
        } = self;
        let mut read_stream = out.stream.try_clone()?;
        read_stream.set_read_timeout(None)?;
        let closer = Arc::new(Closer(out.stream.try_clone()?));
        let (resp_tx, resp_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        for e in queue.events {
            // The receiver is alive (held below), so this cannot fail.
            let _ = ev_tx.send(e);
        }
        std::thread::Builder::new()
            .name("control-client-reader".into())
            .spawn(move || {
                // Ends when the socket closes: both halves dropped (Closer) or server gone.
                loop {
                    let line = match reader.next_line(&mut read_stream, None) {
                        Ok(l) => l,
                        Err(_) => return,
                    };
                    match parse_server_line(&line) {
                        Ok(ServerLine::Event(e)) => {
                            let _ = ev_tx.send(e);
                        }
                        Ok(ServerLine::Response { id, result }) => {
                            let _ = resp_tx.send((id, result));
                        }
                        _ => {}
                    }
                }
            })?;
        Ok((
            ControlRequester {
                out,
                responses: resp_rx,
                _closer: Arc::clone(&closer),
            },
            EventStream {
                events: ev_rx,
                _closer: closer,
            },
        ))
    }
}

struct Closer(UnixStream);

impl Drop for Closer {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// The request half of a split client.
pub struct ControlRequester {
    out: Requests,
    responses: Receiver<ResponseResult>,
    _closer: Arc<Closer>,
}

impl std::fmt::Debug for ControlRequester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlRequester")
            .field("hello", &self.out.hello)
            .finish_non_exhaustive()
    }
}

impl ControlRequester {
    /// The server's hello.
    pub fn hello(&self) -> &Hello {
        &self.out.hello
    }

    /// Limit how long [`request`](Self::request) waits (default: no limit).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.out.timeout = timeout;
    }

    /// Send `req` and wait for its response.
    ///
    /// # Errors
    /// As [`ControlClient::request`].
    pub fn request(&mut self, req: Request) -> Result<Response, ClientError> {
        let responses = &self.responses;
        self.out.exchange(&req, |_, deadline| match deadline {
            None => responses.recv().map_err(|_| ClientError::Closed),
            Some(d) => responses
                .recv_timeout(d.saturating_duration_since(Instant::now()))
                .map_err(|e| match e {
                    RecvTimeoutError::Timeout => ClientError::Timeout,
                    RecvTimeoutError::Disconnected => ClientError::Closed,
                }),
        })
    }
}

/// The event half of a split client. Also an `Iterator` of events that blocks and ends
/// when the connection closes.
pub struct EventStream {
    events: Receiver<Event>,
    _closer: Arc<Closer>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("queued", &self.events.len())
            .finish()
    }
}

impl EventStream {
    /// The next event within `timeout` (`None`: wait forever); `Ok(None)` on timeout.
    ///
    /// # Errors
    /// [`ClientError::Closed`] once the connection is gone and the queue is empty.
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Option<Event>, ClientError> {
        match timeout {
            None => self
                .events
                .recv()
                .map(Some)
                .map_err(|_| ClientError::Closed),
            Some(t) => match self.events.recv_timeout(t) {
                Ok(e) => Ok(Some(e)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Disconnected) => Err(ClientError::Closed),
            },
        }
    }
}

impl Iterator for EventStream {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.events.recv().ok()
    }
}
