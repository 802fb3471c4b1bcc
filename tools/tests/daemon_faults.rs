//! The `rtc-engine` daemon failing under its clients: SIGKILL mid-call (the peers see the
//! failure, `rtc-demo --control` answers 503 while the daemon is gone and works again
//! when it is back) and SIGTERM (sessions are closed with DTLS close_notify and the
//! daemon exits 0 in bounded time).

mod browser_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use browser_common::{Reap, free_port, rtc_engine};
use control::{ControlClient, Request, Response, SessionCreate, SessionSetup};
use rtc_core::dtls::DtlsError;
use rtc_core::event::FailReason;
use rtc_core::ice::Candidate;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};
use tools::loadgen::{self, Config, Mode};

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtc-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn start_daemon(sock: &Path) -> Reap {
    let child = Reap(
        Command::new(rtc_engine())
            .args(["--shards", "1", "--pin", "false", "--control-socket"])
            .arg(sock)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rtc-engine starts"),
    );
    // The socket is live once a client connects (a killed daemon leaves its file).
    let t0 = Instant::now();
    while ControlClient::connect(sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rtc-engine never opened its control socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// One HTTP/1.1 request; the status code and body (`None`: no answer).
fn http(addr: &str, method: &str, path: &str, ctype: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A peer on a loopback socket with an offer of `media`.
struct Peer {
    rtc: Rtc,
    sock: UdpSocket,
    addr: SocketAddr,
    next: Instant,
}

impl Peer {
    fn offer(
        media: &[(MediaKind, Direction)],
    ) -> (Peer, String, rtc_core::sdp_api::SdpPendingOffer) {
        let now = Instant::now();
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("read timeout");
        let addr = sock.local_addr().expect("local addr");
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).expect("rtc");
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("candidate"));
        let mut api = rtc.sdp_api();
        for (k, d) in media {
            api.add_media(*k, *d);
        }
        let (offer, pending) = api.apply().expect("offer");
        (
            Peer {
                rtc,
                sock,
                addr,
                next: now,
            },
            offer.to_sdp_string(),
            pending,
        )
    }

    /// Runs the peer until `stop` holds for an event or `limit` passes; returns the
    /// event that stopped it.
    fn run_until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&Event<'_>) -> bool,
    ) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            let now = Instant::now();
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                let _ = self.rtc.handle_input(Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: self.addr,
                        contents: &buf[..n],
                    },
                ));
            }
            if now >= self.next {
                let _ = self.rtc.handle_input(Input::Timeout(now));
            }
            loop {
                match self.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = self.sock.send_to(t.contents, t.destination);
                    }
                    Ok(Output::Event(ev)) => {
                        if stop(&ev) {
                            return Some(format!("{ev:?}"));
                        }
                    }
                    Ok(Output::Timeout(t)) => {
                        self.next = t;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        None
    }
}

#[test]
fn sigkill_mid_call_fails_the_peers_and_the_demo_answers_503_until_the_daemon_is_back() {
    let dir = tmp_dir("kill");
    let sock = dir.join("control.sock");
    let mut daemon = start_daemon(&sock);
    let http_addr = format!("127.0.0.1:{}", free_port());
    let _demo = Reap(
        Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
            .arg("--control")
            .arg(&sock)
            .args(["--http", &http_addr])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rtc-demo starts"),
    );
    let t0 = Instant::now();
    while http(&http_addr, "GET", "/rooms", "text/plain", "").map(|r| r.0) != Some(200) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rtc-demo never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A call through the control socket: 1 publisher, 2 subscribers. Its steady phase
    // outlasts ICE consent (30 s, RFC 7675) after the kill.
    let cfg = Config {
        mode: Mode::Control(sock.clone()),
        rooms: 1,
        publishers: 1,
        subscribers: 2,
        threads: 1,
        duration: Duration::from_secs(45),
        ramp: 0.0,
        connect_timeout: Duration::from_secs(20),
        video_kbps: 200,
        fps: 15,
        ..Config::default()
    };
    let (steady_tx, steady_rx) = mpsc::channel();
    let (failed_tx, failed_rx) = mpsc::channel();
    let run = std::thread::spawn(move || {
        let mut told = false;
        let mut failed_told = false;
        loadgen::run_with_progress(&cfg, &mut |p| {
            if !told && p.phase == "steady" && p.connected == p.planned {
                told = true;
                let _ = steady_tx.send(());
            }
            if !failed_told && p.planned > 0 && p.failed == p.planned {
                failed_told = true;
                let _ = failed_tx.send(Instant::now());
            }
        })
    });
    steady_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("every peer connected through the daemon");

    daemon.0.kill().expect("SIGKILL rtc-engine");
    let _ = daemon.0.wait();
    let killed = Instant::now();

    // While the daemon is gone, the demo says so: 503 (not a hang, not a 5xx of its own).
    let (status, body) =
        http(&http_addr, "GET", "/stats", "text/plain", "").expect("the demo answers");
    assert_eq!(status, 503, "demo without its daemon: {body}");
    let (status, body) = http(
        &http_addr,
        "POST",
        "/whip/after",
        "application/sdp",
        &Peer::offer(&[(MediaKind::Video, Direction::SendOnly)]).1,
    )
    .expect("the demo answers");
    assert_eq!(status, 503, "WHIP without the daemon: {body}");

    // The daemon comes back on the same socket path: the demo recovers.
    let _daemon2 = start_daemon(&sock);
    let back = Instant::now();
    while http(&http_addr, "GET", "/stats", "text/plain", "").map(|r| r.0) != Some(200) {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the demo never recovered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovered = back.elapsed();
    let (status, body) = http(
        &http_addr,
        "POST",
        "/whip/after",
        "application/sdp",
        &Peer::offer(&[(MediaKind::Video, Direction::SendOnly)]).1,
    )
    .expect("the demo answers");
    assert_eq!(status, 201, "WHIP after the restart: {body}");
    // The session lives on the demo's (new) connection: a stale reconnect by the
    // demo's event reader would drop that connection and reap it. It is still there
    // after the reader had many turns (it waits 200 ms per turn).
    std::thread::sleep(Duration::from_secs(2));
    let mut c = ControlClient::connect(&sock).expect("control socket");
    let Ok(Response::EngineStats(s)) = c.request(Request::EngineStats) else {
        panic!("engine stats");
    };
    let sessions: u64 = s.shards.iter().map(|s| s.head.sessions).sum();
    assert_eq!(
        sessions, 1,
        "the WHIP session survived the demo's reconnect"
    );

    // The peers of the killed daemon see the failure (ICE consent expires).
    let report = run
        .join()
        .expect("loadgen thread")
        .expect("the run completes");
    assert_eq!(report.peers.connected, 3, "{}", report.to_text());
    assert_eq!(report.peers.failed, 3, "{}", report.to_text());
    let failed_at = failed_rx
        .try_recv()
        .expect("progress reported every peer failed");
    eprintln!(
        "peers failed {:.1} s after SIGKILL; demo recovered {:.2} s after the restart",
        failed_at.duration_since(killed).as_secs_f64(),
        recovered.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_closes_sessions_with_close_notify_and_exits_zero() {
    let dir = tmp_dir("term");
    let sock = dir.join("control.sock");
    let mut daemon = start_daemon(&sock);
    let (mut peer, offer, pending) = Peer::offer(&[
        (MediaKind::Audio, Direction::SendRecv),
        (MediaKind::Video, Direction::SendRecv),
    ]);
    let mut c = ControlClient::connect(&sock).expect("control socket");
    let created = match c.request(Request::SessionCreate(SessionCreate {
        setup: SessionSetup::Offer(offer),
        room: None,
        shard: None,
        reap_on_disconnect: false,
    })) {
        Ok(Response::SessionCreated(s)) => s,
        other => panic!("session.create: {other:?}"),
    };
    let answer = SdpAnswer::from_sdp_string(created.answer.as_deref().expect("an answer"))
        .expect("answer parses");
    peer.rtc
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("answer accepted");
    peer.run_until(Duration::from_secs(30), |e| matches!(e, Event::Connected))
        .expect("the peer connects");

    let term = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    // The peer learns at once (DTLS close_notify), not by consent expiry (30 s).
    let ev = peer.run_until(Duration::from_secs(10), |e| matches!(e, Event::Failed(_)));
    let closed_after = term.elapsed();
    assert_eq!(
        ev.as_deref(),
        Some(format!("{:?}", Event::Failed(FailReason::Dtls(DtlsError::Closed))).as_str()),
        "close_notify within 10 s of SIGTERM"
    );
    // Exit within a bound far above the ~0.1 s it takes (a busy machine), far below
    // anything a stuck shutdown would take.
    let exit = loop {
        if let Some(st) = daemon.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            term.elapsed() < Duration::from_secs(15),
            "rtc-engine did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let exited_after = term.elapsed();
    assert!(exit.success(), "rtc-engine exit status {exit:?}");
    assert!(!sock.exists(), "the control socket was removed");
    eprintln!(
        "SIGTERM: close_notify at the peer after {:.1} ms, exit 0 after {:.3} s",
        closed_after.as_secs_f64() * 1e3,
        exited_after.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
