//! The demo's HTTP front end under hostile clients: slow sockets, foreign origins and
//! Host names, oversized heads and bodies. Each test talks raw HTTP/1.1 over TCP so it
//! controls exactly what the server sees.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine::{Engine, EngineConfig, EngineHandle};
use rtc_core::Rtc;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use tools::demo::{Backend, DemoConfig, DemoServer, InProcessBackend};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` and reads the reply until the server closes (or 10 s pass).
fn exchange(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect to the demo");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer before reading everything: ignore write errors.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset after the answer arrived still leaves the answer.
            Err(e) if !out.is_empty() && e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the reply: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// One request with `Connection: close`, `Host: {addr}` unless `headers` has a Host.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    exchange(addr, &raw)
}

fn start(cfg: DemoConfig) -> (EngineHandle, DemoServer) {
    let engine = Engine::start(EngineConfig {
        shards: Some(1),
        pin: false,
        ..EngineConfig::default()
    })
    .unwrap();
    let backend: Arc<dyn Backend> = Arc::new(InProcessBackend::new(engine.clone()));
    let server = DemoServer::start(
        backend,
        DemoConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            ..cfg
        },
    )
    .unwrap();
    (engine, server)
}

fn stop(engine: EngineHandle, server: DemoServer) {
    server.shutdown();
    engine.shutdown();
}

fn sessions(server: &DemoServer) -> u64 {
    server
        .backend()
        .stats()
        .expect("stats")
        .shards
        .iter()
        .map(|s| s.sessions)
        .sum()
}

fn offer() -> String {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .unwrap();
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly);
    let (offer, _pending) = api.apply().unwrap();
    offer.to_sdp_string()
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a rusage; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft open-files limit so the test and the server can both hold `need`.
fn raise_nofile(need: u64) {
    // SAFETY: plain getrlimit/setrlimit on a stack struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if (lim.rlim_cur as u64) < need {
            lim.rlim_cur = lim.rlim_max.min(need as libc::rlim_t);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
        assert!(
            lim.rlim_cur as u64 >= need,
            "need {need} open files, the hard limit is {}",
            lim.rlim_max
        );
    }
}

const SLOW: usize = 1500;

/// 1,500 sockets that trickle a request head one byte at a time (each byte well within
/// any per-read timeout) neither starve a normal request nor burn the server's CPU, and
/// the server closes them once the whole-head deadline has passed.
#[test]
fn slow_sockets_do_not_starve_requests() {
    raise_nofile(4 * SLOW as u64 + 256);
    let deadline = Duration::from_secs(2);
    let (engine, server) = start(DemoConfig {
        read_timeout: deadline,
        ..DemoConfig::default()
    });
    let addr = server.local_addr();

    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("slow socket {i}: {e}"));
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
            .unwrap();
        slow.push(s);
    }
    let connected = Instant::now();
    // Each socket sends one more byte every 500 ms: never idle for a per-read timeout.
    let trickling = Arc::new(AtomicBool::new(true));
    let clones: Vec<TcpStream> = slow.iter().map(|s| s.try_clone().unwrap()).collect();
    let t = Arc::clone(&trickling);
    let trickler = std::thread::spawn(move || {
        let mut clones = clones;
        while t.load(Ordering::SeqCst) {
            for s in &mut clones {
                let _ = s.write(b"a");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });

    // A normal request still gets through quickly.
    let t0 = Instant::now();
    let r = request(addr, "GET", "/rooms", &[], b"");
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took < Duration::from_secs(1),
        "a normal request took {took:?}"
    );

    // The server stays (nearly) idle while holding them.
    let cpu0 = cpu_time();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = cpu_time() - cpu0;
    assert!(
        cpu < Duration::from_millis(1000),
        "{cpu:?} of CPU in 2 s with {SLOW} slow sockets"
    );

    // Past the head deadline (plus slack), every slow socket has been closed by the
    // server, although each kept sending.
    let wait = (deadline + Duration::from_secs(3)).saturating_sub(connected.elapsed());
    std::thread::sleep(wait);
    let mut open = 0;
    for s in &mut slow {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    open += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    trickling.store(false, Ordering::SeqCst);
    trickler.join().unwrap();
    assert_eq!(
        open,
        0,
        "{open} of {SLOW} trickling sockets still open {:?} after connecting \
         (head deadline {deadline:?})",
        connected.elapsed()
    );

    // And the server still answers.
    assert_eq!(request(addr, "GET", "/rooms", &[], b"").status, 200);
    drop(slow);
    stop(engine, server);
}

/// A page on another origin can neither create a session nor read a CORS answer; a
/// page the server served itself (same origin) can.
#[test]
fn cross_origin_page_cannot_create_session() {
    let (engine, server) = start(DemoConfig::default());
    let addr = server.local_addr();
    let offer = offer();
    let evil = ("Origin", "http://evil.example");
    let sdp = ("Content-Type", "application/sdp");

    // The preflight a browser sends first gets no permission.
    let r = request(
        addr,
        "OPTIONS",
        "/whip/room",
        &[
            evil,
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    let acao = r.header("Access-Control-Allow-Origin");
    assert!(
        acao.is_none_or(|o| o != "*" && o != "http://evil.example"),
        "preflight from a foreign origin allowed: {acao:?}"
    );

    // Nor does the POST itself (a page could send it without a preflight via a
    // form-like request, or an old browser might): it is refused before any session.
    let r = request(addr, "POST", "/whip/room", &[evil, sdp], offer.as_bytes());
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(server.room("room").is_none());
    assert_eq!(sessions(&server), 0);

    // The demo's own page (same origin) works.
    let own = format!("http://{addr}");
    let r = request(
        addr,
        "POST",
        "/whip/room",
        &[("Origin", &own), sdp],
        offer.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(sessions(&server), 1);
    stop(engine, server);

    // An origin the operator allowed gets its preflight and its POST through.
    let (engine, server) = start(DemoConfig {
        allowed_origins: vec!["https://app.example".into()],
        ..DemoConfig::default()
    });
    let addr = server.local_addr();
    let app = ("Origin", "https://app.example");
    let r = request(
        addr,
        "OPTIONS",
        "/whip/room",
        &[app, ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    let r = request(addr, "POST", "/whip/room", &[app, sdp], offer.as_bytes());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    let r = request(addr, "POST", "/whip/room", &[evil, sdp], offer.as_bytes());
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(sessions(&server), 1);
    stop(engine, server);
}

/// A head larger than the limit, or with too many header fields, gets 431.
#[test]
fn oversized_headers_get_431() {
    let (engine, server) = start(DemoConfig::default());
    let addr = server.local_addr();
    let big = "a".repeat(64 * 1024);
    let r = request(addr, "GET", "/", &[("X-Big", &big)], b"");
    assert_eq!(r.status, 431, "{}", r.body);

    let names: Vec<String> = (0..300).map(|i| format!("X-H{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let r = request(addr, "GET", "/", &many, b"");
    assert_eq!(r.status, 431, "{}", r.body);

    assert_eq!(request(addr, "GET", "/", &[], b"").status, 200);
    stop(engine, server);
}

/// A body larger than `max_body` gets 413, whether declared up front or streamed in
/// chunks, and a huge declared length is refused at once (nothing is reserved for it).
#[test]
fn oversized_body_gets_413() {
    let (engine, server) = start(DemoConfig {
        max_body: 16 * 1024,
        ..DemoConfig::default()
    });
    let addr = server.local_addr();
    let sdp = ("Content-Type", "application/sdp");

    let r = request(addr, "POST", "/whip/room", &[sdp], &vec![b'a'; 64 * 1024]);
    assert_eq!(r.status, 413, "{}", r.body);

    let t0 = Instant::now();
    let r = exchange(
        addr,
        format!(
            "POST /whip/room HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
             Content-Length: 107374182400\r\n\r\nv=0\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(t0.elapsed() < Duration::from_secs(2));

    let mut chunked = format!(
        "POST /whip/room HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..32 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'a'; 0x400]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(addr, &chunked);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(sessions(&server), 0);
    stop(engine, server);
}

/// A Host name the server does not answer for (what a DNS-rebinding page sends) is
/// refused; IP literals and `localhost` are served.
#[test]
fn wrong_host_is_refused() {
    let (engine, server) = start(DemoConfig::default());
    let addr = server.local_addr();
    let port = addr.port();
    let r = request(
        addr,
        "GET",
        "/rooms",
        &[("Host", &format!("rebind.evil.example:{port}"))],
        b"",
    );
    assert_eq!(r.status, 421, "{}", r.body);
    let r = request(
        addr,
        "POST",
        "/whip/room",
        &[
            ("Host", "rebind.evil.example"),
            ("Content-Type", "application/sdp"),
        ],
        offer().as_bytes(),
    );
    assert_eq!(r.status, 421, "{}", r.body);
    assert_eq!(sessions(&server), 0);
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_owned(),
    ] {
        let r = request(addr, "GET", "/rooms", &[("Host", &host)], b"");
        assert_eq!(r.status, 200, "{host}: {}", r.body);
    }
    stop(engine, server);
}
