//! The I/O thread of the control server: one epoll loop that accepts connections
//! (checking the peer's credentials), reads request lines, queues them for the workers
//! and writes responses and subscribed events back.

use super::*;
use crate::sys::Epoll;

const TOKEN_LISTENER: u64 = 0;
const TOKEN_WAKE: u64 = 1;
const TOKEN_HUB: u64 = 2;
const TOKEN_BASE: u64 = 16;

/// Stop dispatching/reading while this much output is pending for a client.
const OUT_HIGH: usize = 256 * 1024;
/// Pull queued events into the output buffer only below this.
const OUT_EVENTS: usize = 64 * 1024;
/// Rounds of dispatch/pull/flush per wake-up of one connection.
const MAX_ROUNDS: usize = 16;
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    in_start: usize,
    scan: usize,
    out: Vec<u8>,
    out_pos: usize,
    busy: bool,
    read_closed: bool,
    dead: bool,
    close_after_flush: bool,
    registered: bool,
    interest: u32,
    sub: Option<Arc<Subscriber>>,
}

impl Conn {
    fn pending_out(&self) -> usize {
        self.out.len() - self.out_pos
    }

    fn unprocessed(&self) -> usize {
        self.inbuf.len() - self.in_start
    }

    /// The next complete line (without `\n`), as a range into `inbuf`.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        let from = self.scan.max(self.in_start);
        let rest = self.inbuf.get(from..)?;
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let start = self.in_start;
                let end = from + i;
                self.in_start = end + 1;
                self.scan = self.in_start;
                Some((start, end))
            }
            None => {
                self.scan = self.inbuf.len();
                None
            }
        }
    }

    fn compact_input(&mut self) {
        if self.in_start == self.inbuf.len() {
            self.inbuf.clear();
            self.in_start = 0;
            self.scan = 0;
            if self.inbuf.capacity() > 64 * 1024 {
                self.inbuf.shrink_to(4096);
            }
        } else if self.in_start > 64 * 1024 && self.in_start > self.inbuf.len() / 2 {
            self.inbuf.drain(..self.in_start);
            self.scan -= self.in_start;
            self.in_start = 0;
        }
    }

    fn flush(&mut self) {
        while self.out_pos < self.out.len() {
            let Some(pending) = self.out.get(self.out_pos..) else {
                break;
            };
            match self.stream.write(pending) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 1024 * 1024 {
                self.out.shrink_to(4096);
            }
        }
    }
}

/// The I/O thread: accepts connections, reads requests, hands them to the workers and
/// writes responses and events back.
pub(super) struct IoLoop {
    epoll: Epoll,
    listener: UnixListener,
    listener_paused: Option<Instant>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    jobs: Option<super::jobs::JobTx<Job>>,
    done: Receiver<Done>,
    wake: Arc<EventFd>,
    hub: EventHub,
    stop: Arc<AtomicBool>,
    cfg: ServerConfig,
    scratch: Vec<u8>,
}

impl IoLoop {
    /// Registers the listener, the wake-up eventfd and the event hub with a new epoll
    /// instance and runs the loop on its own thread (`control-io`).
    pub(super) fn start(
        listener: UnixListener,
        jobs: super::jobs::JobTx<Job>,
        done: Receiver<Done>,
        wake: Arc<EventFd>,
        hub: EventHub,
        stop: Arc<AtomicBool>,
        cfg: ServerConfig,
    ) -> io::Result<JoinHandle<()>> {
        let io = IoLoop {
            epoll: Epoll::new()?,
            listener,
            listener_paused: None,
            conns: HashMap::new(),
            next_id: 1,
            jobs: Some(jobs),
            done,
            wake,
            hub,
            stop,
            cfg,
            scratch: vec![0u8; 64 * 1024],
        };
        io.epoll
            .add(io.listener.as_raw_fd(), TOKEN_LISTENER, sys::IN)?;
        io.epoll.add(io.wake.raw(), TOKEN_WAKE, sys::IN)?;
        io.epoll.add(io.hub.inner.wake.raw(), TOKEN_HUB, sys::IN)?;
        std::thread::Builder::new()
            .name("control-io".into())
            .spawn(move || io.run())
    }

    fn run(mut self) {
        let mut ready = Vec::new();
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let timeout = if shutdown_deadline.is_some() || self.listener_paused.is_some() {
                100
            } else {
                -1
            };
            if self.epoll.wait(&mut ready, timeout).is_err() {
                // epoll_wait only fails on programming errors (EBADF/EINVAL); stop
                // rather than spin.
                break;
            }
            if let Some(t) = self.listener_paused
                && t <= Instant::now()
                && shutdown_deadline.is_none()
            {
                self.listener_paused = None;
                let _ = self
                    .epoll
                    .add(self.listener.as_raw_fd(), TOKEN_LISTENER, sys::IN);
            }
            for r in ready.iter().copied() {
                match r.token {
                    TOKEN_LISTENER => self.accept_all(),
                    TOKEN_WAKE => {
                        self.wake.drain();
                        while let Ok(d) = self.done.try_recv() {
                            self.on_done(d);
                        }
                    }
                    TOKEN_HUB => {
                        self.hub.inner.wake.drain();
                        while let Ok(id) = self.hub.inner.ready_rx.try_recv() {
                            if let Some(c) = self.conns.get(&id.0)
                                && let Some(s) = &c.sub
                            {
                                s.notified.store(false, Ordering::Release);
                            }
                            self.drive(id.0);
                        }
                    }
                    t => self.on_io(t - TOKEN_BASE, r.events),
                }
            }
            if self.stop.load(Ordering::Acquire) && shutdown_deadline.is_none() {
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
                let _ = self.epoll.delete(self.listener.as_raw_fd());
                let ids: Vec<u64> = self.conns.keys().copied().collect();
                for id in ids {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.dead = true;
                    }
                    self.drive(id);
                }
            }
            if let Some(deadline) = shutdown_deadline {
                while let Ok(d) = self.done.try_recv() {
                    self.on_done(d);
                }
                if self.conns.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
        }
        // Whatever is left (handlers stuck past the grace period): report them gone.
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.finalize(id);
        }
        // Dropping the job sender lets the workers finish the queue and exit.
        self.jobs = None;
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.on_accept(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(_) => {
                    // Out of descriptors or memory: stop accepting for a moment
                    // instead of spinning on a readable listener.
                    let _ = self.epoll.delete(self.listener.as_raw_fd());
                    self.listener_paused = Some(Instant::now() + Duration::from_millis(100));
                    break;
                }
            }
        }
    }

    fn on_accept(&mut self, stream: UnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let allowed = match sys::peer_cred(stream.as_raw_fd()) {
            Ok(c) => super::peer_allowed(&self.cfg, c.uid, c.gid, || {
                // Unreadable groups (kernel before 4.13): only uid and primary gid count.
                sys::peer_groups(stream.as_raw_fd()).unwrap_or_default()
            }),
            Err(_) => false,
        };
        if !allowed {
            let e = ControlError::new(ErrorCode::Forbidden, "peer credentials are not allowed");
            let _ = (&stream).write(&error_line(None, &e));
            return;
        }
        if self.conns.len() >= self.cfg.max_clients {
            let e = ControlError::unavailable("too many control clients");
            let _ = (&stream).write(&error_line(None, &e));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let conn = Conn {
            stream,
            inbuf: Vec::new(),
            in_start: 0,
            scan: 0,
            out: hello_line(&self.cfg.server_name),
            out_pos: 0,
            busy: false,
            read_closed: false,
            dead: false,
            close_after_flush: false,
            registered: false,
            interest: 0,
            sub: None,
        };
        let fd = conn.stream.as_raw_fd();
        if self.epoll.add(fd, TOKEN_BASE + id, 0).is_err() {
            return;
        }
        let mut conn = conn;
        conn.registered = true;
        self.conns.insert(id, conn);
        self.drive(id);
    }

    fn on_io(&mut self, id: u64, events: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if events & (sys::IN | sys::RDHUP) != 0 {
            read_some(c, &mut self.scratch, self.cfg.max_line);
        }
        if events & sys::OUT != 0 {
            c.flush();
        }
        if events & (sys::HUP | sys::ERR) != 0 {
            // The peer closed both directions (HUP is level-triggered and cannot be
            // masked): nothing more can be delivered. Wait for an in-flight request
            // to finish, then report the client gone.
            c.dead = true;
            c.read_closed = true;
        }
        self.drive(id);
    }

    fn on_done(&mut self, d: Done) {
        let Some(c) = self.conns.get_mut(&d.client.0) else {
            return;
        };
        c.busy = false;
        if !c.dead {
            c.out.extend_from_slice(&d.line);
        }
        self.drive(d.client.0);
    }

    /// Advance one connection: dispatch complete lines, pull events, flush, decide
    /// whether to close, and update the epoll interest.
    fn drive(&mut self, id: u64) {
        let stopping = self.stop.load(Ordering::Acquire);
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let client = ClientId(id);
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                // Fairness: let other connections run. Queued events would get no new
                // wake-up, so ask the hub loop to come back to this client.
                if let Some(s) = &c.sub
                    && !s.rx.is_empty()
                    && !s.notified.swap(true, Ordering::AcqRel)
                {
                    let _ = self.hub.inner.ready_tx.send(client);
                    self.hub.inner.wake.notify();
                }
                break;
            }
            if c.dead {
                break;
            }
            if let Some(s) = &c.sub
                && s.overflow.load(Ordering::Relaxed)
            {
                c.dead = true;
                break;
            }
            let mut progressed = false;
            // Dispatch complete lines.
            while !c.busy && !c.close_after_flush && !stopping && c.pending_out() < OUT_HIGH {
                let Some((start, end)) = c.next_line() else {
                    break;
                };
                progressed = true;
                if end - start > self.cfg.max_line {
                    line_too_long(c, self.cfg.max_line);
                    break;
                }
                let Some(line) = c.inbuf.get(start..end) else {
                    break;
                };
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                match parse_request_line(line) {
                    Err(e) => {
                        let l = error_line(e.id.as_ref(), &e.error);
                        c.out.extend_from_slice(&l);
                    }
                    Ok(env) => match env.request {
                        Request::EventsSubscribe(p) => {
                            let kinds = p.kinds.unwrap_or_else(|| EventKind::ALL.to_vec());
                            let mask = kinds.iter().fold(0u32, |m, k| m | k.bit());
                            c.sub = Some(self.hub.subscribe(client, mask));
                            let resp = Response::EventsSubscribed(EventsSubscribed { kinds });
                            c.out.extend_from_slice(&response_line(&env.id, &resp));
                        }
                        Request::EventsUnsubscribe => {
                            if c.sub.take().is_some() {
                                self.hub.unsubscribe(client);
                            }
                            c.out
                                .extend_from_slice(&response_line(&env.id, &Response::Done));
                        }
                        req => {
                            let sent = self.jobs.as_ref().is_some_and(|j| {
                                j.send(Job::Request {
                                    client,
                                    id: env.id.clone(),
                                    req,
                                })
                                .is_ok()
                            });
                            if sent {
                                c.busy = true;
                            } else {
                                let e = ControlError::new(
                                    ErrorCode::ShuttingDown,
                                    "the server is shutting down",
                                );
                                c.out.extend_from_slice(&error_line(Some(&env.id), &e));
                            }
                        }
                    },
                }
            }
            c.compact_input();
            // An incomplete line that is already too long.
            if !c.close_after_flush && c.unprocessed() > self.cfg.max_line {
                let has_newline = c
                    .inbuf
                    .get(c.scan.max(c.in_start)..)
                    .is_some_and(|r| r.contains(&b'\n'));
                if !has_newline && !c.busy {
                    line_too_long(c, self.cfg.max_line);
                }
            }
            // Events.
            if let Some(s) = &c.sub {
                while c.pending_out() < OUT_EVENTS {
                    match s.rx.try_recv() {
                        Ok(l) => {
                            c.out.extend_from_slice(&l);
                            progressed = true;
                        }
                        Err(_) => break,
                    }
                }
            }
            let before = c.pending_out();
            c.flush();
            if c.pending_out() < before {
                progressed = true;
            }
            if !progressed || c.dead {
                break;
            }
        }
        if c.read_closed && !c.busy && !c.close_after_flush {
            // Peer finished sending: answer what is complete, drop a partial line.
            let complete = c
                .inbuf
                .get(c.scan.max(c.in_start)..)
                .is_some_and(|r| r.contains(&b'\n'));
            if !complete {
                c.close_after_flush = true;
            }
        }
        let finished = c.close_after_flush && !c.busy && c.pending_out() == 0;
        if (c.dead || finished || stopping) && !c.busy {
            self.finalize(id);
            return;
        }
        if c.dead {
            // Waiting for the in-flight request: stop watching the socket.
            if c.registered {
                let _ = self.epoll.delete(c.stream.as_raw_fd());
                c.registered = false;
            }
            return;
        }
        let mut want = 0;
        let can_read = !c.read_closed
            && !c.close_after_flush
            && c.unprocessed() <= self.cfg.max_line
            && c.pending_out() < OUT_HIGH;
        if can_read {
            want |= sys::IN | sys::RDHUP;
        }
        if c.pending_out() > 0 {
            want |= sys::OUT;
        }
        if c.registered && want != c.interest {
            if self
                .epoll
                .modify(c.stream.as_raw_fd(), TOKEN_BASE + id, want)
                .is_err()
            {
                c.dead = true;
                if !c.busy {
                    self.finalize(id);
                }
                return;
            }
            c.interest = want;
        }
    }

    fn finalize(&mut self, id: u64) {
        let Some(c) = self.conns.remove(&id) else {
            return;
        };
        if c.registered {
            let _ = self.epoll.delete(c.stream.as_raw_fd());
        }
        if c.sub.is_some() {
            self.hub.unsubscribe(ClientId(id));
        }
        drop(c);
        if let Some(j) = &self.jobs {
            let _ = j.send(Job::Gone(ClientId(id)));
        }
    }
}

fn line_too_long(c: &mut Conn, max: usize) {
    let e = ControlError::new(
        ErrorCode::LineTooLong,
        format!("line longer than {max} bytes; closing"),
    );
    c.out.extend_from_slice(&error_line(None, &e));
    c.close_after_flush = true;
    c.read_closed = true;
    c.inbuf.clear();
    c.in_start = 0;
    c.scan = 0;
}

fn read_some(c: &mut Conn, scratch: &mut [u8], max_line: usize) {
    while !c.read_closed && !c.close_after_flush && c.unprocessed() <= max_line {
        match c.stream.read(scratch) {
            Ok(0) => c.read_closed = true,
            Ok(n) => {
                let Some(chunk) = scratch.get(..n) else {
                    break;
                };
                c.inbuf.extend_from_slice(chunk);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                c.dead = true;
                c.read_closed = true;
            }
        }
    }
}
