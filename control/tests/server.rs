//! The server over a real Unix socket, with a recording test handler.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use control::*;
use serde_json::{Value, json};

/// Records calls; answers with canned responses. `session.close` of session 666 blocks
/// until released (to test clients vanishing mid-request); of 999 panics; `shard.list`
/// answers with the wrong shape.
#[derive(Default)]
struct TestHandler {
    calls: Mutex<Vec<(ClientId, Request)>>,
    gone: Mutex<Vec<ClientId>>,
    gate: Mutex<bool>,
    gate_cv: Condvar,
    blocked: AtomicUsize,
}

impl TestHandler {
    fn release(&self) {
        *self.gate.lock().expect("lock") = true;
        self.gate_cv.notify_all();
    }
    fn gone(&self) -> Vec<ClientId> {
        self.gone.lock().expect("lock").clone()
    }
    fn calls(&self) -> Vec<(ClientId, Request)> {
        self.calls.lock().expect("lock").clone()
    }
}

impl ControlHandler for TestHandler {
    fn handle(&self, client: ClientId, req: Request) -> Result<Response, ControlError> {
        self.calls.lock().expect("lock").push((client, req.clone()));
        match req {
            Request::SessionCreate(c) => Ok(Response::SessionCreated(SessionCreated {
                session: SessionId(42),
                shard: c.shard.unwrap_or(ShardId(0)),
                answer: match c.setup {
                    SessionSetup::Offer(_) => Some("v=0\r\n".into()),
                    SessionSetup::Direct(_) => None,
                },
                ice_ufrag: "srvu".into(),
                ice_pwd: "srvpwd".into(),
                fingerprint: Fingerprint {
                    algorithm: "sha-256".into(),
                    value: "AA:BB".into(),
                },
                dtls_role: DtlsRole::Server,
                candidates: vec![],
            })),
            Request::SessionClose(SessionRef { session }) if session.0 == 666 => {
                self.blocked.fetch_add(1, Ordering::SeqCst);
                let mut open = self.gate.lock().expect("lock");
                while !*open {
                    open = self.gate_cv.wait(open).expect("wait");
                }
                Ok(Response::Done)
            }
            Request::SessionClose(SessionRef { session }) if session.0 == 999 => {
                panic!("handler bug (expected by the test)")
            }
            Request::SessionClose(SessionRef { session }) if session.0 == 404 => {
                Err(ControlError::not_found("no session 404"))
            }
            Request::RoomList => Ok(Response::Rooms(RoomList {
                rooms: vec![RoomInfo {
                    room: RoomId("lobby".into()),
                    sessions: vec![SessionId(1)],
                    publishers: vec![],
                }],
            })),
            Request::ShardList => Ok(Response::Done),
            _ => Ok(Response::Done),
        }
    }

    fn client_gone(&self, client: ClientId) {
        self.gone.lock().expect("lock").push(client);
    }
}

static DIR_SEQ: AtomicUsize = AtomicUsize::new(0);

fn sock_path() -> PathBuf {
    let n = DIR_SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("control-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join("control.sock")
}

fn start(cfg: impl FnOnce(&mut ServerConfig)) -> (ControlServer, Arc<TestHandler>) {
    let h = Arc::new(TestHandler::default());
    let mut c = ServerConfig::new(sock_path());
    cfg(&mut c);
    let s = ControlServer::bind(c, h.clone()).expect("bind");
    (s, h)
}

/// Wait (up to 10 s) for `f` to hold.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Raw {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Raw {
    fn connect(s: &ControlServer) -> Raw {
        let w = UnixStream::connect(s.path()).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw {
            r: BufReader::new(w.try_clone().expect("clone")),
            w,
        }
    }
    fn line(&mut self) -> Value {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).expect("read");
        assert!(n > 0, "unexpected EOF");
        serde_json::from_str(&l).expect("server sends JSON")
    }
    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).expect("write");
    }
    /// The server closed the connection: EOF, or a reset when the server closed with
    /// our unread input still queued (Linux reports that as ECONNRESET).
    fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        match self.r.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("read to EOF: {e}"),
        }
        assert!(
            rest.is_empty(),
            "extra data: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

#[test]
fn hello_then_request_response() {
    let (s, h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    let hello = raw.line();
    assert_eq!(hello["hello"]["protocol"], 1);
    assert!(
        hello["hello"]["server"]
            .as_str()
            .expect("server")
            .starts_with("rtc-engine/")
    );
    raw.send("{\"id\":7,\"op\":\"room.list\"}\n");
    let v = raw.line();
    assert_eq!(v["id"], 7);
    assert_eq!(v["ok"]["rooms"][0]["room"], "lobby");
    raw.send("{\"id\":\"s\",\"op\":\"session.close\",\"params\":{\"session\":404}}\n");
    let v = raw.line();
    assert_eq!(
        v,
        json!({"id":"s","error":{"code":"not_found","message":"no session 404"}})
    );
    assert_eq!(h.calls().len(), 2);

    // The typed client.
    let mut c = ControlClient::connect(s.path()).expect("client");
    assert_eq!(c.hello().protocol, PROTOCOL_VERSION);
    let r = c
        .request(Request::SessionCreate(SessionCreate {
            setup: SessionSetup::Offer("v=0\r\n".into()),
            room: Some(RoomId("lobby".into())),
            shard: Some(ShardId(3)),
            reap_on_disconnect: true,
        }))
        .expect("create");
    match r {
        Response::SessionCreated(sc) => {
            assert_eq!(sc.session, SessionId(42));
            assert_eq!(sc.shard, ShardId(3));
            assert_eq!(sc.answer.as_deref(), Some("v=0\r\n"));
        }
        other => panic!("{other:?}"),
    }
    let e = c
        .request(Request::SessionClose(SessionRef {
            session: SessionId(404),
        }))
        .expect_err("not found");
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    assert_eq!(
        c.request(Request::RoomCreate(RoomRef {
            room: RoomId("x".into())
        }))
        .expect("ok"),
        Response::Done
    );
    // The handler saw the typed request with the client id.
    let calls = h.calls();
    let (cid, req) = calls.get(2).expect("third call");
    assert!(matches!(req, Request::SessionCreate(sc) if sc.reap_on_disconnect));
    drop(c);
    let cid = *cid;
    eventually("client_gone", || h.gone().contains(&cid));
}

#[test]
fn pipelined_requests_answer_in_order() {
    let (s, _h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.line();
    let mut batch = String::new();
    for i in 0..50 {
        batch.push_str(&format!(
            "{{\"id\":{i},\"op\":\"room.create\",\"params\":{{\"room\":\"r{i}\"}}}}\n"
        ));
        if i % 7 == 0 {
            batch.push_str("not json\n");
        }
    }
    raw.send(&batch);
    let mut next = 0;
    while next < 50 {
        let v = raw.line();
        if v["id"].is_null() {
            assert_eq!(v["error"]["code"], "bad_json");
            continue;
        }
        assert_eq!(v["id"], next);
        assert_eq!(v["ok"], json!({}));
        next += 1;
    }
}

#[test]
fn bad_input_gets_typed_errors_and_connection_survives() {
    let (s, h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.line();
    raw.send("garbage\n");
    assert_eq!(raw.line()["error"]["code"], "bad_json");
    raw.send("{\"id\":1,\"op\":\"no.such\"}\n");
    let v = raw.line();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(1), json!("unknown_op"))
    );
    raw.send("{\"id\":2,\"op\":\"session.close\",\"params\":{\"session\":\"x\"}}\n");
    let v = raw.line();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(2), json!("bad_params"))
    );
    raw.send("{\"op\":\"room.list\"}\n");
    assert_eq!(raw.line()["error"]["code"], "bad_request");
    raw.send("\n   \n\u{0}\n");
    assert_eq!(raw.line()["error"]["code"], "bad_json");
    // Handler panic and wrong response shape are `internal`; the server lives on.
    raw.send("{\"id\":3,\"op\":\"session.close\",\"params\":{\"session\":999}}\n");
    assert_eq!(raw.line()["error"]["code"], "internal");
    raw.send("{\"id\":4,\"op\":\"shard.list\"}\n");
    assert_eq!(raw.line()["error"]["code"], "internal");
    raw.send("{\"id\":5,\"op\":\"room.list\"}\r\n");
    assert_eq!(raw.line()["id"], 5);
    // Only the three valid requests reached the handler.
    assert_eq!(h.calls().len(), 3);
}

#[test]
fn half_line_then_disconnect_calls_client_gone() {
    let (s, h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.line();
    raw.send("{\"id\":1,\"op\":\"room.li");
    drop(raw);
    eventually("client_gone", || h.gone().len() == 1);
    assert!(h.calls().is_empty());
}

#[test]
fn half_close_still_gets_answers() {
    // `echo '{...}' | socat - UNIX-CONNECT:...` shuts down its write side first.
    let (s, _h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.send("{\"id\":1,\"op\":\"room.list\"}\n{\"id\":2,\"op\":\"room.list\"}\n{\"id\":3,\"op\":");
    raw.w.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert!(raw.line()["hello"].is_object());
    assert_eq!(raw.line()["id"], 1);
    assert_eq!(raw.line()["id"], 2);
    raw.expect_eof();
}

#[test]
fn vanish_mid_request_calls_client_gone_after_handle() {
    let (s, h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.line();
    raw.send("{\"id\":1,\"op\":\"session.close\",\"params\":{\"session\":666}}\n");
    eventually("handler blocked", || h.blocked.load(Ordering::SeqCst) == 1);
    drop(raw);
    // Give the server a chance to notice the hang-up; client_gone must wait for handle.
    std::thread::sleep(Duration::from_millis(50));
    assert!(h.gone().is_empty(), "client_gone before handle returned");
    h.release();
    eventually("client_gone", || h.gone().len() == 1);
}

#[test]
fn oversize_line_errors_and_closes() {
    let (s, h) = start(|_| {});
    let mut raw = Raw::connect(&s);
    raw.line();
    let writer = raw.w.try_clone().expect("clone");
    let t = std::thread::spawn(move || {
        let mut w = writer;
        let chunk = vec![b'a'; 64 * 1024];
        // 1 MiB + 128 KiB without a newline; the server may close before we finish.
        for _ in 0..18 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let v = raw.line();
    assert_eq!(v["error"]["code"], "line_too_long");
    assert!(v["id"].is_null());
    raw.expect_eof();
    t.join().expect("writer");
    eventually("client_gone", || h.gone().len() == 1);

    // A long line *with* its newline in one go is refused the same way.
    let mut raw = Raw::connect(&s);
    raw.line();
    let mut big = format!(
        "{{\"id\":1,\"op\":\"room.create\",\"params\":{{\"room\":\"{}\"}}}}",
        "x".repeat(MAX_LINE)
    );
    big.push('\n');
    let mut w = raw.w.try_clone().expect("clone");
    let t = std::thread::spawn(move || {
        let _ = w.write_all(big.as_bytes());
    });
    assert_eq!(raw.line()["error"]["code"], "line_too_long");
    raw.expect_eof();
    t.join().expect("writer");
    assert!(h.calls().is_empty());

    // Just under the limit is fine.
    let mut raw = Raw::connect(&s);
    raw.line();
    let room = "y".repeat(MAX_LINE - 100);
    let line = format!("{{\"id\":1,\"op\":\"room.create\",\"params\":{{\"room\":\"{room}\"}}}}\n");
    assert!(line.len() - 1 <= MAX_LINE);
    let mut w = raw.w.try_clone().expect("clone");
    let t = std::thread::spawn(move || w.write_all(line.as_bytes()).expect("write"));
    assert_eq!(raw.line()["ok"], json!({}));
    t.join().expect("writer");
}

#[test]
fn events_reach_subscribers_only() {
    let (s, _h) = start(|_| {});
    let hub = s.events();
    let mut sub_all = ControlClient::connect(s.path()).expect("c1");
    let mut sub_state = ControlClient::connect(s.path()).expect("c2");
    let mut none = ControlClient::connect(s.path()).expect("c3");
    match sub_all
        .request(Request::EventsSubscribe(EventsSubscribe::default()))
        .expect("subscribe")
    {
        Response::EventsSubscribed(e) => assert_eq!(e.kinds.len(), EventKind::ALL.len()),
        other => panic!("{other:?}"),
    }
    sub_state
        .request(Request::EventsSubscribe(EventsSubscribe {
            kinds: Some(vec![EventKind::SessionState]),
        }))
        .expect("subscribe");
    assert_eq!(hub.subscribers(), 2);
    let state = Event::SessionState(SessionStateChange {
        session: SessionId(1),
        state: SessionState::Connected,
        previous: SessionState::Connecting,
    });
    let msg = Event::ChannelMessage(ChannelMessage {
        session: SessionId(1),
        channel: 0,
        label: "chat".into(),
        payload: ChannelPayload::Text("hi".into()),
    });
    assert_eq!(hub.publish(&state), 2);
    assert_eq!(hub.publish(&msg), 1);
    let t = Some(Duration::from_secs(10));
    assert_eq!(sub_all.next_event(t).expect("ev"), Some(state.clone()));
    assert_eq!(sub_all.next_event(t).expect("ev"), Some(msg));
    assert_eq!(sub_state.next_event(t).expect("ev"), Some(state.clone()));
    assert_eq!(
        sub_state
            .next_event(Some(Duration::from_millis(50)))
            .expect("ev"),
        None
    );
    assert_eq!(
        none.next_event(Some(Duration::from_millis(50)))
            .expect("ev"),
        None
    );
    // Events arriving during a request are queued, not lost.
    let hub2 = hub.clone();
    let st = state.clone();
    let pubber = std::thread::spawn(move || {
        for _ in 0..20 {
            hub2.publish(&st);
        }
    });
    pubber.join().expect("publisher");
    assert_eq!(
        sub_all
            .request(Request::RoomList)
            .map(|r| matches!(r, Response::Rooms(_)))
            .ok(),
        Some(true)
    );
    for _ in 0..20 {
        assert_eq!(sub_all.next_event(t).expect("ev"), Some(state.clone()));
    }
    // Unsubscribe; disconnect removes the rest.
    assert_eq!(
        sub_state
            .request(Request::EventsUnsubscribe)
            .expect("unsub"),
        Response::Done
    );
    assert_eq!(hub.subscribers(), 1);
    drop(sub_all);
    eventually("hub cleanup", || hub.subscribers() == 0);
    assert_eq!(hub.publish(&state), 0);
}

#[test]
fn slow_subscriber_is_dropped_without_blocking_publisher() {
    let (s, h) = start(|c| c.event_queue = 8);
    let hub = s.events();
    let mut raw = Raw::connect(&s);
    raw.line();
    raw.send("{\"id\":1,\"op\":\"events.subscribe\"}\n");
    assert!(raw.line()["ok"]["kinds"].is_array());
    let big = Event::SessionFailed(SessionFailure {
        session: SessionId(1),
        shard: ShardId(0),
        reason: "x".repeat(64 * 1024),
    });
    // Never read: the socket buffer fills, then the queue, then the client is dropped.
    for _ in 0..200 {
        hub.publish(&big);
    }
    eventually("slow client dropped", || {
        h.gone().len() == 1 && hub.subscribers() == 0
    });
}

#[test]
fn split_client_requests_and_events() {
    let (s, _h) = start(|_| {});
    let hub = s.events();
    let c = ControlClient::connect(s.path()).expect("client");
    let (mut req, events) = c.split().expect("split");
    req.request(Request::EventsSubscribe(EventsSubscribe::default()))
        .expect("sub");
    let ev = Event::TrackAdded(TrackChange {
        session: SessionId(3),
        track: TrackId("0".into()),
        kind: MediaKind::Audio,
        room: None,
    });
    let t = std::thread::spawn(move || events.recv(Some(Duration::from_secs(10))).expect("recv"));
    eventually("subscribed", || hub.subscribers() == 1);
    hub.publish(&ev);
    assert_eq!(t.join().expect("thread"), Some(ev));
    assert_eq!(
        req.request(Request::EngineStats)
            .expect_err("wrong shape")
            .code(),
        Some(ErrorCode::Internal)
    );
}

#[test]
fn many_concurrent_clients() {
    let (s, h) = start(|_| {});
    let n = 1000;
    // Open all connections first so they are concurrent, then request on each.
    let mut conns: Vec<Raw> = (0..n).map(|_| Raw::connect(&s)).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(&format!("{{\"id\":{i},\"op\":\"room.list\"}}\n"));
    }
    for (i, c) in conns.iter_mut().enumerate() {
        assert!(c.line()["hello"].is_object());
        let v = c.line();
        assert_eq!(v["id"], i);
        assert_eq!(v["ok"]["rooms"][0]["room"], "lobby");
    }
    assert_eq!(h.calls().len(), n);
    let ids: std::collections::HashSet<ClientId> = h.calls().iter().map(|(c, _)| *c).collect();
    assert_eq!(ids.len(), n);
    drop(conns);
    eventually("all gone", || h.gone().len() == n);
}

#[test]
fn peer_not_on_allow_list_is_forbidden() {
    let me = unsafe_free_euid();
    let (s, h) = start(|c| {
        c.allowed_uids = vec![me.wrapping_add(4242)];
        c.allowed_gids = vec![];
    });
    let mut raw = Raw::connect(&s);
    let v = raw.line();
    assert_eq!(v["error"]["code"], "forbidden");
    raw.expect_eof();
    let e = ControlClient::connect(s.path()).expect_err("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(h.calls().is_empty());
    assert!(h.gone().is_empty());
}

/// Our euid, read from the socket file we own (no libc call needed).
fn unsafe_free_euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    let p = sock_path();
    std::fs::write(&p, b"").expect("write");
    let uid = std::fs::metadata(&p).expect("meta").uid();
    let _ = std::fs::remove_file(&p);
    uid
}

#[test]
fn socket_file_mode_stale_file_and_removal() {
    let path = sock_path();
    // A stale socket (bound, then its listener dropped) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("stale"));
    assert!(path.exists());
    let h = Arc::new(TestHandler::default());
    let mut s = ControlServer::bind(ServerConfig::new(&path), h.clone()).expect("bind over stale");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A live server is not clobbered.
    let e = ControlServer::bind(ServerConfig::new(&path), h.clone()).expect_err("in use");
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    // A client connected at shutdown gets client_gone.
    let c = ControlClient::connect(&path).expect("client");
    s.shutdown();
    assert!(!path.exists(), "shutdown removes the socket");
    // Two clients: bind's liveness probe and `c`.
    assert_eq!(h.gone().len(), 2);
    drop(c);
    s.shutdown(); // idempotent

    // A regular file is never deleted.
    std::fs::write(&path, b"not a socket").expect("write");
    let e = ControlServer::bind(ServerConfig::new(&path), h.clone()).expect_err("not a socket");
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(path.exists());
    std::fs::remove_file(&path).expect("rm");

    // Drop removes the socket too; custom mode is applied.
    let mut cfg = ServerConfig::new(&path);
    cfg.mode = 0o660;
    let s = ControlServer::bind(cfg, h).expect("bind");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(s);
    assert!(!path.exists());
}

#[test]
fn many_events_arrive_in_order() {
    let (s, _h) = start(|c| c.event_queue = 20_000);
    let hub = s.events();
    let c = ControlClient::connect(s.path()).expect("client");
    let (mut req, events) = c.split().expect("split");
    req.request(Request::EventsSubscribe(EventsSubscribe::default()))
        .expect("sub");
    let n = 10_000u64;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        while (got.len() as u64) < n {
            match events.recv(Some(Duration::from_secs(10))).expect("recv") {
                Some(Event::SessionState(s)) => got.push(s.session.0),
                other => panic!("{other:?}"),
            }
        }
        got
    });
    for i in 0..n {
        let delivered = hub.publish(&Event::SessionState(SessionStateChange {
            session: SessionId(i),
            state: SessionState::Connected,
            previous: SessionState::New,
        }));
        assert_eq!(delivered, 1);
    }
    let got = reader.join().expect("reader");
    assert_eq!(got, (0..n).collect::<Vec<_>>());
}
