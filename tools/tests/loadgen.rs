//! rtc-loadgen end to end: the library `run` and the binary against an in-process
//! engine, the control-socket mode against the engine's real control handler and
//! server, and the WHIP/WHEP
//! mode against a small test HTTP server; all backed by a real engine on loopback.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::{
    ClientId, ControlError, ControlHandler, ControlServer, EventHub, Request, Response,
    ServerConfig,
};
use engine::control::EngineControl;
use engine::{EngineConfig, EngineHandle, Placement, RoomId, SessionId};
use tools::loadgen::{self, Config, Mode, Report};

fn engine(shards: usize) -> EngineHandle {
    let cfg = EngineConfig {
        shards: Some(shards),
        pin: false,
        ..EngineConfig::default()
    };
    engine::Engine::start(cfg).expect("engine starts")
}

fn small(mode: Mode, rooms: usize, publishers: usize, subscribers: usize) -> Config {
    Config {
        mode,
        rooms,
        publishers,
        subscribers,
        threads: 2,
        duration: Duration::from_secs(2),
        ramp: 0.0,
        connect_timeout: Duration::from_secs(15),
        video_kbps: 200,
        fps: 15,
        ..Config::default()
    }
}

/// What every healthy run must show: everyone connected, every stream received, all
/// payloads intact, no loss at these rates.
fn assert_healthy(r: &Report, peers: u64, streams: u64) {
    assert_eq!(r.peers.planned, peers, "{}", r.to_text());
    assert_eq!(r.peers.created, peers, "{}", r.to_text());
    assert_eq!(r.peers.connected, peers, "{}", r.to_text());
    assert_eq!(r.peers.failed, 0, "{}", r.to_text());
    assert_eq!(r.peers.signalling_errors, 0, "{}", r.to_text());
    assert_eq!(r.received.checks.corrupt, 0, "{}", r.to_text());
    assert_eq!(r.received.checks.foreign, 0, "{}", r.to_text());
    assert_eq!(r.received.lost, 0, "{}", r.to_text());
    assert_eq!(r.received.checks.duplicates, 0, "{}", r.to_text());
    assert_eq!(
        r.received.checks.streams_expected,
        streams,
        "{}",
        r.to_text()
    );
    assert_eq!(
        r.received.checks.streams_receiving,
        streams,
        "{}",
        r.to_text()
    );
    assert!(r.sent.video_packets > 0, "{}", r.to_text());
    assert!(r.sent.keyframes >= 1);
    assert!(r.received.packets > 0);
    // Latency comes from the fully verified sample only.
    assert!(r.received.verified > 0 && r.received.verified <= r.received.packets);
    assert_eq!(
        r.latency_ms.count,
        r.received.verified - r.received.checks.corrupt
    );
    assert!(r.latency_ms.max >= r.latency_ms.p50 && r.latency_ms.p50 > 0.0);
    assert_eq!(r.connect_ms.count, peers);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn library_in_process_two_rooms() {
    let cfg = small(Mode::InProcess { shards: 2 }, 2, 1, 3);
    assert_eq!(cfg.verify_every, 16, "the default samples");
    let r = loadgen::run(&cfg).expect("run");
    // 2 rooms × (1 publisher + 3 subscribers); each subscriber gets audio + video.
    assert_healthy(&r, 8, 2 * 3 * 2);
    // Sampled: about one packet in 16 verified (by RTP sequence number, so at least
    // the first of each stream and every 16th after), the rest counted from headers
    // without loss. Generous bounds: streams start at random sequence numbers.
    assert!(
        r.received.verified * 4 < r.received.packets,
        "{}",
        r.to_text()
    );
    assert!(r.sent.audio_packets > 0);
    // Every subscriber receives (at most) what its publisher sent.
    let sent = r.sent.video_packets + r.sent.audio_packets;
    assert!(r.received.packets <= 3 * sent, "{}", r.to_text());
    assert!(r.received.packets >= sent, "{}", r.to_text());
    let e = r.engine.as_ref().expect("in-process engine counters");
    assert_eq!(e.shards, 2);
    assert!(e.rtp_forwarded >= r.received.packets);
    assert_eq!(r.mode, "in-process");
    assert!(r.throughput.pps_out > 0.0 && r.throughput.pps_in > r.throughput.pps_out);
}

#[test]
fn progress_is_reported() {
    let mut cfg = small(Mode::InProcess { shards: 1 }, 1, 1, 1);
    cfg.audio = false;
    cfg.threads = 1;
    let mut lines = Vec::new();
    let r = loadgen::run_with_progress(&cfg, &mut |p| lines.push(p.clone())).expect("run");
    assert_healthy(&r, 2, 1);
    assert_eq!(r.sent.audio_packets, 0);
    assert!(!lines.is_empty());
    let last = lines.last().unwrap();
    assert_eq!(last.planned, 2);
    assert!(
        lines
            .iter()
            .any(|p| p.phase == "steady" && p.connected == 2)
    );
    assert!(last.line().contains("peers"));
}

#[test]
fn binary_json_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtc-loadgen"))
        .args([
            "--in-process",
            "--engine-shards",
            "2",
            "--rooms",
            "1",
            "-n",
            "2",
            "-m",
            "2",
            "--duration",
            "1.5",
            "--ramp",
            "0",
            "--video-kbps",
            "150",
            "--verify",
            "1/1",
            "--json",
            "-q",
        ])
        .output()
        .expect("run rtc-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    for key in [
        "mode",
        "peers",
        "connect_ms",
        "latency_ms",
        "sent",
        "received",
        "throughput",
        "engine",
        "errors",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max", "count"] {
        assert!(v["latency_ms"][key].is_number(), "latency_ms.{key}");
        assert!(v["connect_ms"][key].is_number(), "connect_ms.{key}");
    }
    for key in [
        "lost",
        "loss_ratio",
        "out_of_order",
        "duplicates",
        "corrupt",
        "expected",
    ] {
        assert!(v["received"][key].is_number(), "received.{key}");
    }
    let r: Report = serde_json::from_value(v).expect("report deserialises");
    // Two publishers, two subscribers each receiving both (one session each).
    assert_healthy(&r, 4, 2 * 2 * 2);
    // --verify 1/1: every packet went through SRTP and the payload check.
    assert_eq!(r.received.verified, r.received.packets);
}

#[test]
fn binary_refuses_remote_whip_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_rtc-loadgen"))
        .args(["--whip", "http://192.0.2.1:8080", "--duration", "1", "-q"])
        .output()
        .expect("run rtc-loadgen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Control socket: the engine's real handler, counting the closes it is asked for.
// ---------------------------------------------------------------------------------------

/// The engine's real control handler, with a count of the `session.close` requests it
/// served successfully (the only addition: the test checks every session was closed
/// through the socket).
struct CountingCloses {
    inner: Arc<EngineControl>,
    closed: AtomicU64,
}

impl ControlHandler for CountingCloses {
    fn handle(&self, client: ClientId, req: Request) -> Result<Response, ControlError> {
        let close = matches!(req, Request::SessionClose(_));
        let res = self.inner.handle(client, req);
        if close && res.is_ok() {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    fn client_gone(&self, client: ClientId) {
        self.inner.client_gone(client);
    }
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-{}-{name}", std::process::id()))
}

#[test]
fn control_socket_mode() {
    let eng = engine(2);
    let hub = EventHub::new(1024).expect("event hub");
    let handler = EngineControl::new(eng.clone(), hub.clone());
    let adapter = Arc::new(CountingCloses {
        inner: Arc::clone(&handler),
        closed: AtomicU64::new(0),
    });
    let path = temp_path("control.sock");
    let mut server =
        ControlServer::bind_with_events(ServerConfig::new(&path), adapter.clone(), hub)
            .expect("bind control");
    let cfg = small(Mode::Control(path.clone()), 1, 2, 2);
    let r = loadgen::run(&cfg).expect("run");
    server.shutdown();
    handler.shutdown();
    eng.shutdown();
    let _ = std::fs::remove_file(&path);
    assert_healthy(&r, 4, 2 * 2 * 2);
    assert_eq!(r.mode, "control");
    assert!(r.engine.is_none());
    // Every session was closed through the socket.
    assert_eq!(adapter.closed.load(Ordering::Relaxed), 4);
}

// ---------------------------------------------------------------------------------------
// WHIP/WHEP: a minimal HTTP server over an in-process engine (the shape rtc-demo serves).
// ---------------------------------------------------------------------------------------

struct WhipState {
    engine: EngineHandle,
    rooms: Mutex<HashMap<String, RoomId>>,
    deleted: AtomicU64,
    stop: AtomicBool,
}

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn serve_one(state: &WhipState, mut s: TcpStream) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut len = 0usize;
    let mut ctype = String::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            match n.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap(),
                "content-type" => ctype = v.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let room_id = |name: &str| {
        *state
            .rooms
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_insert_with(|| state.engine.create_room(name).unwrap())
    };
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["whip", room]) | ("POST", ["whep", room, _]) => {
            assert_eq!(ctype, "application/sdp");
            let rid = room_id(room);
            let offer = String::from_utf8(body).unwrap();
            let info = match state
                .engine
                .create_session(engine::SessionSetup::Offer(offer), Placement::Auto)
            {
                Ok(i) => i,
                Err(e) => return respond(&mut s, "400 Bad Request", &[], e.to_string().as_bytes()),
            };
            let r = if let ["whep", _, publisher] = segs.as_slice() {
                let p = SessionId(publisher.parse().unwrap());
                state.engine.subscribe(rid, info.id, p).map(|_| ())
            } else {
                state.engine.publish(rid, info.id)
            };
            if let Err(e) = r {
                return respond(&mut s, "404 Not Found", &[], e.to_string().as_bytes());
            }
            let kind = segs[0];
            let location = format!("/{kind}/{room}/{}", info.id.0);
            respond(
                &mut s,
                "201 Created",
                &[
                    ("Location", location),
                    ("Content-Type", "application/sdp".into()),
                ],
                info.answer.unwrap().as_bytes(),
            );
        }
        ("DELETE", [_, _, id]) => {
            let id = SessionId(id.parse().unwrap());
            match state.engine.close_session(id) {
                Ok(()) => {
                    state.deleted.fetch_add(1, Ordering::Relaxed);
                    respond(&mut s, "200 OK", &[], b"");
                }
                Err(_) => respond(&mut s, "404 Not Found", &[], b""),
            }
        }
        _ => respond(&mut s, "404 Not Found", &[], b"no route"),
    }
}

#[test]
fn whip_whep_mode() {
    let eng = engine(2);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(WhipState {
        engine: eng.clone(),
        rooms: Mutex::new(HashMap::new()),
        deleted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let st = state.clone();
    let server = std::thread::spawn(move || {
        for conn in listener.incoming() {
            if st.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(c) = conn {
                serve_one(&st, c);
            }
        }
    });
    // 1 room × (2 publishers + 1 subscriber): the subscriber is one WHEP session per
    // publisher.
    let cfg = small(Mode::Whip(format!("http://{addr}")), 1, 2, 1);
    let r = loadgen::run(&cfg).expect("run");
    state.stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    server.join().unwrap();
    eng.shutdown();
    assert_healthy(&r, 4, 2 * 2);
    assert_eq!(r.mode, "whip");
    assert_eq!(state.deleted.load(Ordering::Relaxed), 4);
}
