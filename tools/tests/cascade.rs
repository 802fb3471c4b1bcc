//! Cascading between two real `rtc-engine` processes (issue #17): engine A on 127.0.0.2
//! and engine B on 127.0.0.3, inside a network namespace this test creates, wired by
//! their control sockets as a signalling service would (`relay.listen` on B,
//! `relay.connect` on A, `relay.accept` on B, `relay.publish` on A, `relay.attach` and
//! `publish` on B). A publisher on A, 20 subscribers on B through one relay whose path
//! runs through an impairing UDP relay (2 % loss): byte-exact media, NACK repair across
//! the relay, a late subscriber's keyframe request reaching the publisher, and SIGKILL of
//! engine A ending B's relayed tracks with RTCP BYE.
//!
//! The engines run two shards each (`RTC_CASCADE_SHARDS` sets another number): on A the
//! publisher is placed on another shard than A's relay session (B's NACKs are answered
//! from the layer cache on the publisher's shard through the relay's shard), on B the
//! subscribers are spread over every shard (the relay's repaired packets and the end of
//! the tracks reach legs on other shards than the relay's).
//!
//! The namespace: the test re-executes itself under `unshare -n` (with `lo` up), so
//! the engines and every peer run on a loopback of their own. Without the privilege to
//! create one (not root) the test says so and skips; CI runs as root.

mod browser_common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use browser_common::{Reap, rtc_engine};
use control::{
    ControlClient, ControlRequester, Event, EventStream, Publish, RelayAccept, RelayAttach,
    RelayConnect, RelayListen, RelayPublish, Request, Response, RoomId, RoomRef, SessionCreate,
    SessionRef, SessionSetup, ShardId, Subscribe, TrackId,
};
use engine::SessionId;
use rtc_core::event::KeyframeRequestKind;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use test_support::relay::{Link, Relay};
use test_support::{Client, Streamer, check_payload, drive, stream};

/// Set in the re-executed test: it runs inside the namespace.
const NETNS_ENV: &str = "RTC_CASCADE_IN_NETNS";
const SUBSCRIBERS: usize = 20;
/// The relay's keepalive and silence window (the relay's consent window).
const KEEPALIVE_MS: u64 = 100;
const TIMEOUT_MS: u64 = 1500;

/// Runs `body` inside a new network namespace: re-executes this test binary (only the
/// test `name`) under `unshare -n` with the loopback interface up. Returns without
/// running it when no namespace can be made here.
fn in_netns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(NETNS_ENV).is_some() {
        body();
        return;
    }
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED {name}: cannot create a network namespace (unshare -n; run as root)");
        return;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let status = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$@\"",
            "sh",
        ])
        .arg(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .status()
        .expect("unshare runs");
    assert!(status.success(), "{name} failed inside its namespace");
}

/// One `rtc-engine` process on `bind` with its control socket.
struct Daemon {
    proc: Reap,
    /// Its shards (numbered from 0).
    shards: u32,
    sock: PathBuf,
    ctl: ControlClient,
}

impl Daemon {
    /// `shards`: unless `RTC_CASCADE_SHARDS` says otherwise.
    fn start(dir: &Path, tag: &str, bind: &str, shards: u32) -> Daemon {
        let shards: u32 = match std::env::var("RTC_CASCADE_SHARDS") {
            Ok(v) => v.parse().expect("RTC_CASCADE_SHARDS is a number of shards"),
            Err(_) => shards,
        };
        let sock = dir.join(format!("{tag}.sock"));
        let proc = Reap(
            Command::new(rtc_engine())
                .args([
                    "--shards",
                    &shards.to_string(),
                    "--pin",
                    "false",
                    "--stats-interval",
                    "0",
                    // Keyframe requests are coalesced per layer over this interval: a
                    // request within it of an earlier one (a subscriber's repair PLI
                    // on the lossy path) would wait for its end, up to the default
                    // 500 ms; the late subscriber's request is to go through at once.
                    "--keyframe-interval-ms",
                    "50",
                ])
                .args(["--backend", "portable", "--bind", bind, "--control-socket"])
                .arg(&sock)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("rtc-engine starts"),
        );
        let t0 = Instant::now();
        let mut ctl = loop {
            if let Ok(c) = ControlClient::connect(&sock) {
                break c;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "rtc-engine {tag} never opened its control socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        ctl.set_timeout(Some(Duration::from_secs(10)));
        Daemon {
            proc,
            shards,
            sock,
            ctl,
        }
    }

    fn req(&mut self, r: Request) -> Response {
        self.ctl.request(r).expect("control request")
    }

    /// The engine's event stream (a second connection).
    fn events(&self) -> (ControlRequester, EventStream) {
        let mut c = ControlClient::connect(&self.sock).expect("control connect");
        c.set_timeout(Some(Duration::from_secs(10)));
        c.request(Request::EventsSubscribe(Default::default()))
            .expect("events.subscribe");
        c.split().expect("split")
    }

    /// A test peer with a session on this engine, offering `media`.
    fn client(&mut self, name: &str, media: &[(MediaKind, Direction)]) -> Client {
        self.client_on(name, media, None)
    }

    /// [`Daemon::client`] on shard `shard` (`None`: the engine picks).
    fn client_on(
        &mut self,
        name: &str,
        media: &[(MediaKind, Direction)],
        shard: Option<ShardId>,
    ) -> Client {
        Client::connect_offer(name, media, |offer| {
            let Response::SessionCreated(c) = self.req(Request::SessionCreate(SessionCreate {
                setup: SessionSetup::Offer(offer),
                room: None,
                shard,
                reap_on_disconnect: false,
            })) else {
                panic!("session.create answers a session");
            };
            (SessionId(c.session.0), c.answer.expect("an SDP answer"))
        })
    }

    fn session_stats(&mut self, id: u64) -> control::SessionStats {
        match self.req(Request::SessionStats(SessionRef {
            session: control::SessionId(id),
        })) {
            Response::SessionStats(s) => s,
            other => panic!("session.stats answered {other:?}"),
        }
    }
}

fn sid(c: &Client) -> control::SessionId {
    control::SessionId(c.id().0)
}

/// Video packet indexes `c` received intact.
fn video_got(c: &Client) -> BTreeSet<u32> {
    c.rtp
        .iter()
        .filter_map(|p| check_payload(&p.payload))
        .filter(|(k, _)| *k == MediaKind::Video)
        .map(|(_, i)| i)
        .collect()
}

const RECV: &[(MediaKind, Direction)] = &[
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];

#[test]
fn cascade_two_engine_processes_relay_media_nacks_keyframes_and_the_end() {
    in_netns(
        "cascade_two_engine_processes_relay_media_nacks_keyframes_and_the_end",
        cascade_body,
    );
}

fn cascade_body() {
    let dir = std::env::temp_dir().join(format!("rtc-cascade-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut a = Daemon::start(&dir, "a", "127.0.0.2", 2);
    let mut b = Daemon::start(&dir, "b", "127.0.0.3", 2);
    let (_eb_req, ev_b) = b.events();

    // The relay: B listens, A connects (through the impairing relay), B accepts.
    let Response::RelayInvite(mut invite) = b.req(Request::RelayListen(RelayListen {
        keepalive_ms: Some(KEEPALIVE_MS),
        timeout_ms: Some(TIMEOUT_MS),
    })) else {
        panic!("relay.listen answers an invitation");
    };
    let b_addr: SocketAddr = invite.addr.parse().expect("relay address");
    assert_eq!(b_addr.ip().to_string(), "127.0.0.3");
    let link = Relay::start(b_addr, 17).expect("impairing relay");
    invite.addr = link.front().to_string();
    let Response::RelayAnswer(answer) = a.req(Request::RelayConnect(RelayConnect {
        invite: invite.clone(),
        keepalive_ms: Some(KEEPALIVE_MS),
        timeout_ms: Some(TIMEOUT_MS),
    })) else {
        panic!("relay.connect answers");
    };
    b.req(Request::RelayAccept(RelayAccept {
        relay: invite.relay,
        answer: answer.clone(),
    }));
    let (ra, rb) = (answer.relay, invite.relay);

    let room = RoomId("cascade".into());
    for d in [&mut a, &mut b] {
        d.req(Request::RoomCreate(RoomRef { room: room.clone() }));
    }
    // Placement (see the module docs): the publisher on the shard after A's relay's, the
    // subscribers round the shards of B (with one shard: all together).
    let shard_of = |d: &mut Daemon, id: control::SessionId| d.session_stats(id.0).shard;
    let (ra_shard, rb_shard) = (shard_of(&mut a, ra), shard_of(&mut b, rb));
    let (shards_a, shards_b) = (a.shards, b.shards);
    let pub_shard = ShardId((ra_shard.0 + 1) % shards_a);
    let mut clients = vec![a.client_on(
        "pub",
        &[
            (MediaKind::Audio, Direction::SendOnly),
            (MediaKind::Video, Direction::SendOnly),
        ],
        Some(pub_shard),
    )];
    for i in 0..SUBSCRIBERS {
        let shard = ShardId(i as u32 % shards_b);
        clients.push(b.client_on(&format!("sub{i}"), RECV, Some(shard)));
    }
    eprintln!(
        "A: relay on shard {}, publisher on {} (of {shards_a}); B: relay on shard {}, \
         subscribers on all {shards_b}",
        ra_shard.0, pub_shard.0, rb_shard.0
    );
    let up = drive(&mut clients, Duration::from_secs(30), |cs| {
        cs.iter().all(|c| c.connected)
    });
    assert!(up, "not every peer connected");
    a.req(Request::Publish(Publish {
        session: sid(&clients[0]),
        room: room.clone(),
        tracks: None,
    }));
    for mid in clients[0].mids.clone() {
        let Response::RelayTrack(track) = a.req(Request::RelayPublish(RelayPublish {
            relay: ra,
            session: sid(&clients[0]),
            track: TrackId(mid.to_string()),
        })) else {
            panic!("relay.publish answers a track");
        };
        b.req(Request::RelayAttach(RelayAttach { relay: rb, track }));
    }
    b.req(Request::Publish(Publish {
        session: rb,
        room: room.clone(),
        tracks: None,
    }));
    for c in &clients[1..] {
        let Response::Tracks(t) = b.req(Request::Subscribe(Subscribe {
            subscriber: sid(c),
            publisher: rb,
            tracks: None,
        })) else {
            panic!("subscribe answers tracks");
        };
        assert_eq!(t.tracks.len(), 2, "{}: {t:?}", c.name);
    }

    // The relay is up on both ends before media flows (so every subscriber's first
    // packet is one of the first few).
    let mut last_poll = Instant::now();
    let relay_up = drive(&mut clients, Duration::from_secs(20), |_| {
        if last_poll.elapsed() < Duration::from_millis(50) {
            return false;
        }
        last_poll = Instant::now();
        [(&mut a, ra), (&mut b, rb)]
            .into_iter()
            .all(|(d, r)| d.session_stats(r.0).state == control::SessionState::Connected)
    });
    assert!(relay_up, "the relay did not connect");

    // 2 % loss both ways between the engines.
    link.set_uplink(Link::lossy(0.02));
    link.set_downlink(Link::lossy(0.02));
    let mut s = Streamer::new();
    stream(&mut clients, 0, &mut s, Duration::from_secs(3), |_, _| {});
    drive(&mut clients, Duration::from_millis(500), |_| false);

    let (sent_up, _, dropped_up, _) = link.uplink_stats().snapshot();
    assert!(dropped_up > 0, "the link lost nothing of {sent_up}");
    let stats_b = b.session_stats(rb.0);
    let nacks_b: u64 = stats_b.tracks.iter().map(|t| t.nacks).sum();
    let stats_a = a.session_stats(ra.0);
    eprintln!(
        "link dropped {dropped_up} of {sent_up} A->B; relay on B: rtt {:?} ms, nacks {nacks_b}; on A: rtt {:?} ms",
        stats_b.rtt_ms, stats_a.rtt_ms
    );
    assert!(nacks_b > 0, "no NACK from B's relay end: {stats_b:?}");

    // Every subscriber got every video packet from its first one up to the last 200 ms,
    // byte for byte: the relay's losses were repaired from A's cache.
    let upto = s.video_sent.saturating_sub(18);
    for c in &clients[1..] {
        let got = video_got(c);
        let first = *got
            .first()
            .unwrap_or_else(|| panic!("{}: no media", c.name));
        assert!(first < 60, "{}: first packet {first}", c.name);
        let missing: Vec<u32> = (first..upto).filter(|i| !got.contains(i)).collect();
        assert!(missing.is_empty(), "{}: missing {missing:?}", c.name);
        let audio = c
            .rtp
            .iter()
            .filter(|p| check_payload(&p.payload).is_some_and(|(k, _)| k == MediaKind::Audio))
            .count();
        assert!(audio > 50, "{}: {audio} audio packets", c.name);
        assert!(
            c.rtp.iter().all(|p| check_payload(&p.payload).is_some()),
            "{}: a payload was altered",
            c.name
        );
    }

    // A late subscriber on B asks for a keyframe; the publisher on A hears of it. The
    // path is clean now, so no loss-driven request of another subscriber interferes.
    link.set_uplink(Link::clean());
    link.set_downlink(Link::clean());
    clients.push(b.client("late", RECV));
    let late = clients.len() - 1;
    let ok = drive(&mut clients, Duration::from_secs(30), |cs| {
        cs[late].connected
    });
    assert!(ok, "the late subscriber did not connect");
    let Response::Tracks(legs) = b.req(Request::Subscribe(Subscribe {
        subscriber: sid(&clients[late]),
        publisher: rb,
        tracks: None,
    })) else {
        panic!("subscribe answers tracks");
    };
    assert_eq!(legs.tracks.len(), 2, "{legs:?}");
    let mut reached = false;
    let end = Instant::now() + Duration::from_secs(10);
    while !reached && Instant::now() < end {
        stream(
            &mut clients,
            0,
            &mut s,
            Duration::from_millis(100),
            |_, _| {},
        );
        reached = !video_got(&clients[late]).is_empty();
    }
    assert!(reached, "no media reached the late subscriber");
    // Past the engines' keyframe-request coalescing interval (50 ms here): the request of
    // the late subscriber's own subscription is long served.
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(700),
        |_, _| {},
    );
    let video_ssrc = clients[late]
        .rtp
        .iter()
        .find(|p| check_payload(&p.payload).is_some_and(|(k, _)| k == MediaKind::Video))
        .map(|p| p.ssrc)
        .expect("a video packet");
    // A request is relayed at once, not with a periodic report (RTCP every second) nor
    // held by coalescing (50 ms here): it reaches the publisher within 100 ms. The wall
    // time spans six threads of three processes, which a loaded machine can stall for a
    // moment, so one of three requests (each after the coalescing window of the one
    // before) must make it; a request held for the periodic report would miss all three
    // most of the time.
    let mut took = Vec::new();
    for _ in 0..3 {
        let before = clients[0].keyframe_requests.len();
        let asked = Instant::now();
        clients[late]
            .rtc
            .direct_api()
            .request_keyframe(video_ssrc, KeyframeRequestKind::Pli)
            .expect("keyframe request");
        clients[late].drain(asked);
        let heard = drive(&mut clients, Duration::from_secs(5), |cs| {
            cs[0].keyframe_requests.len() > before
        });
        assert!(heard, "the keyframe request never reached the publisher");
        let t = clients[0].keyframe_requests[before]
            .0
            .saturating_duration_since(asked);
        took.push(t);
        if t <= Duration::from_millis(100) {
            break;
        }
        // Past the coalescing window before the next request.
        drive(&mut clients, Duration::from_millis(100), |_| false);
    }
    eprintln!("late subscriber's keyframe request reached the publisher on A after {took:?}");
    assert!(
        took.iter().any(|t| *t <= Duration::from_millis(100)),
        "keyframe requests took {took:?}"
    );

    // SIGKILL engine A mid-call: B reports the relay down after its silence window and
    // its subscribers get an RTCP BYE for both relayed tracks.
    let mut a_proc = a.proc;
    a_proc.0.kill().expect("SIGKILL engine A");
    let killed = Instant::now();
    let mut reason = None;
    drive(&mut clients[1..], Duration::from_secs(30), |_| {
        while let Ok(Some(e)) = ev_b.recv(Some(Duration::ZERO)) {
            if let Event::RelayDown(d) = e
                && d.relay == rb
            {
                reason = Some(d.reason);
                return true;
            }
        }
        false
    });
    let took = killed.elapsed();
    eprintln!("B reported the relay down ({reason:?}) {took:?} after A was killed");
    assert_eq!(reason.as_deref(), Some("silent"));
    // Generous bound on a loaded machine: the window plus its keepalive checks.
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(5),
        "relay.down after {took:?}"
    );
    let ended = drive(&mut clients[1..], Duration::from_secs(10), |cs| {
        cs.iter().all(|c| c.ended.len() >= 2)
    });
    let counts: Vec<usize> = clients[1..].iter().map(|c| c.ended.len()).collect();
    assert!(
        ended,
        "not every subscriber on B saw both tracks end: {counts:?}"
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 POST of an SDP offer: (status, `X-Session-Id`, body).
fn post_sdp(addr: &str, path: &str, sdp: &str) -> (u16, Option<u64>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("rtc-demo reachable");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .expect("request sent");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let session = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("x-session-id")
            .then(|| v.trim().parse().ok())?
    });
    (status, session, body.to_string())
}

#[test]
fn cascade_rtc_demo_over_two_engines_whip_on_a_whep_on_b() {
    in_netns(
        "cascade_rtc_demo_over_two_engines_whip_on_a_whep_on_b",
        demo_body,
    );
}

fn demo_body() {
    let dir = std::env::temp_dir().join(format!("rtc-cascade-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut a = Daemon::start(&dir, "a", "127.0.0.2", 1);
    let mut b = Daemon::start(&dir, "b", "127.0.0.3", 1);
    let (_demo, http) = start_demo(&a, &b);
    // Two publishers on A.
    let mut publishers = Vec::new();
    let mut clients: Vec<Client> = (0..2)
        .map(|k| {
            Client::connect_offer(
                &format!("whip{k}"),
                &[
                    (MediaKind::Audio, Direction::SendOnly),
                    (MediaKind::Video, Direction::SendOnly),
                ],
                |offer| {
                    let (status, id, body) = post_sdp(&http, "/whip/hall", &offer);
                    assert_eq!(status, 201, "WHIP: {body}");
                    let id = id.expect("X-Session-Id");
                    publishers.push(id);
                    (SessionId(id), body)
                },
            )
        })
        .collect();
    // Two viewers on B, one of each publisher, subscribing at the same moment: both
    // need the room's relay from A to B, which neither has set up yet. They must share
    // one (two relays between the same pair of one-shard engines cannot both work).
    let start = std::sync::Barrier::new(2);
    let viewers: Vec<(Client, u64)> = std::thread::scope(|sc| {
        let handles: Vec<_> = publishers
            .iter()
            .enumerate()
            .map(|(k, &publisher)| {
                let (http, start) = (&http, &start);
                sc.spawn(move || {
                    let mut viewer_id = None;
                    let c = Client::connect_offer(&format!("whep{k}"), RECV, |offer| {
                        start.wait();
                        let (status, id, body) =
                            post_sdp(http, &format!("/whep/hall/{publisher}"), &offer);
                        assert_eq!(status, 201, "WHEP of {publisher}: {body}");
                        let id = id.expect("X-Session-Id");
                        viewer_id = Some(id);
                        (SessionId(id), body)
                    });
                    (c, viewer_id.expect("viewer id"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a WHEP thread"))
            .collect()
    });
    // The publishers are engine A's sessions, the viewers engine B's (ids of the second
    // engine carry its index above bit 48).
    for &publisher in &publishers {
        assert!(publisher < 1 << 48, "publisher {publisher}");
    }
    for (c, viewer) in viewers {
        assert_eq!(
            viewer >> 48,
            1,
            "viewer {viewer} is not on the second engine"
        );
        clients.push(c);
    }
    let listed = |d: &mut Daemon| match d.req(Request::RoomList) {
        Response::Rooms(r) => r.rooms.iter().map(|r| r.sessions.len()).sum::<usize>(),
        other => panic!("room.list answered {other:?}"),
    };
    // A: the publishers; B: the viewers and one relay session.
    assert_eq!(listed(&mut a), 2);
    assert_eq!(listed(&mut b), 3, "one relay session on B");

    let up = drive(&mut clients, Duration::from_secs(30), |cs| {
        cs.iter().all(|c| c.connected)
    });
    assert!(up, "the WHIP and WHEP peers did not connect");
    // Both publishers stream; each viewer gets its publisher's video intact.
    let mut streamers = [Streamer::new(), Streamer::new()];
    let mut got = false;
    let end = Instant::now() + Duration::from_secs(20);
    while !got && Instant::now() < end {
        for (k, s) in streamers.iter_mut().enumerate() {
            stream(&mut clients, k, s, Duration::from_millis(50), |_, _| {});
        }
        got = clients[2..].iter().all(|c| video_got(c).len() > 30);
    }
    let counts: Vec<usize> = clients[2..].iter().map(|c| video_got(c).len()).collect();
    assert!(
        got,
        "the WHEP viewers on B got {counts:?} video packets through the relay"
    );
    for c in &clients[2..] {
        assert!(
            c.rtp.iter().all(|p| check_payload(&p.payload).is_some()),
            "a payload was altered"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rtc-demo --control A --control B --relay-threshold 0` (every viewer on B) on a free
/// port, answering HTTP; its address. The demo is reaped when the namespace's test
/// process exits.
fn start_demo(a: &Daemon, b: &Daemon) -> (Reap, String) {
    let http = format!("127.0.0.1:{}", browser_common::free_port());
    let demo = Reap(
        Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
            .args(["--http", &http, "--relay-threshold", "0", "--control"])
            .arg(&a.sock)
            .arg("--control")
            .arg(&b.sock)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("rtc-demo starts"),
    );
    let t0 = Instant::now();
    while browser_common::http_get(&http, "/rooms").is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "rtc-demo never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (demo, http)
}

#[test]
fn cascade_chromium_publishes_on_engine_a_and_a_page_on_engine_b_decodes() {
    in_netns(
        "cascade_chromium_publishes_on_engine_a_and_a_page_on_engine_b_decodes",
        browser_body,
    );
}

/// The demo's room page in headless Chromium (`tools/browser/demo-e2e.js`): every page
/// publishes on engine A, and with threshold 0 every viewer session is on engine B, so
/// each page decodes the others' video through the relay.
fn browser_body() {
    let dir = std::env::temp_dir().join(format!("rtc-cascade-web-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let a = Daemon::start(&dir, "a", "127.0.0.2", 1);
    let b = Daemon::start(&dir, "b", "127.0.0.3", 1);
    let (_demo, http) = start_demo(&a, &b);
    let base = format!("http://{http}");
    let driver = browser_common::Driver::start("demo-e2e.js", &[&base, "casc"]);
    let r = driver.result(Duration::from_secs(50));
    for k in ["aSeesB", "bSeesA"] {
        assert!(
            browser_common::num(&r, &[k, "framesDecoded"]) > 0,
            "{k}: {r:#}"
        );
        // Shards are numbered across engines: A's first, then B's (one each by
        // default: A has shard 0, B shard 1).
        let (na, nb) = (u64::from(a.shards), u64::from(b.shards));
        let shard = browser_common::num(&r, &[k, "shard"]);
        assert!(shard < na, "{k} publishes on A: {r:#}");
        let viewer = browser_common::num(&r, &[k, "viewerShard"]);
        assert!((na..na + nb).contains(&viewer), "{k} is viewed on B: {r:#}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
