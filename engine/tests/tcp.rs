//! ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing) on loopback: rtc-core peers
//! with only an active TCP candidate against the engine, on both backends.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use engine::io::{BackendPreference, TcpStats};
use engine::{Engine, EngineConfig, EngineHandle, Placement};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

const PUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::SendOnly),
    (MediaKind::Video, Direction::SendOnly),
];
const SUB_MEDIA: [(MediaKind, Direction); 2] = [
    (MediaKind::Audio, Direction::RecvOnly),
    (MediaKind::Video, Direction::RecvOnly),
];
/// A bound for conditions (the waits end as soon as they hold).
const BOUND: Duration = Duration::from_secs(20);

fn tcp_config(backend: BackendPreference) -> EngineConfig {
    let mut cfg = engine_config(backend, 2);
    cfg.tcp_port = Some(0);
    cfg
}

fn tcp_stats(engine: &EngineHandle) -> TcpStats {
    let mut t = TcpStats::default();
    for s in engine.stats().unwrap().shards {
        let x = s.io.tcp;
        t.open += x.open;
        t.accepted += x.accepted;
        t.refused += x.refused;
        t.authenticated += x.authenticated;
        t.closed_peer += x.closed_peer;
        t.closed_garbage += x.closed_garbage;
        t.closed_unauthenticated += x.closed_unauthenticated;
        t.closed_blocked += x.closed_blocked;
        t.closed_local += x.closed_local;
    }
    t
}

fn tcp_send_full(engine: &EngineHandle) -> u64 {
    let st = engine.stats().unwrap();
    st.shards.iter().map(|s| s.io.drops.tcp_send_full).sum()
}

/// The video and audio indices `c` received, every payload checked byte for byte.
fn indices(c: &Client) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut v, mut a) = (BTreeSet::new(), BTreeSet::new());
    for p in &c.rtp {
        match check_payload(&p.payload) {
            Some((MediaKind::Video, i)) => v.insert(i),
            Some((MediaKind::Audio, i)) => a.insert(i),
            None => panic!("{}: payload not byte-exact", c.name),
        };
    }
    (v, a)
}

fn all(n: u32) -> BTreeSet<u32> {
    (0..n).collect()
}

/// Publisher and subscribers over TCP only (one subscriber on each shard): media is
/// forwarded byte-exact and the candidates are passive TCP ones.
fn tcp_media_forwards(backend: BackendPreference) {
    let engine = Engine::start(tcp_config(backend)).unwrap();
    for shard in 0..2 {
        let tcp = engine.shard_announced_tcp(shard).unwrap();
        assert_eq!(tcp.len(), 1);
        assert_ne!(tcp[0].port(), 0);
    }
    let room = engine.create_room("tcp").unwrap();
    let mut clients = vec![
        Client::connect_sdp_tcp("pub", &engine, Placement::Shard(0), &PUB_MEDIA),
        Client::connect_sdp_tcp("sub0", &engine, Placement::Shard(0), &SUB_MEDIA),
        Client::connect_sdp_tcp("sub1", &engine, Placement::Shard(1), &SUB_MEDIA),
    ];
    let ids: Vec<_> = clients.iter().map(Client::id).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    for c in &clients {
        let Transport::Tcp(t) = &c.transport else {
            panic!("tcp transport expected");
        };
        assert!(t.conn.is_some(), "{} connected over TCP", c.name);
    }
    let publisher = ids[0];
    engine.publish(room, publisher).unwrap();
    for id in &ids[1..] {
        engine.subscribe(room, *id, publisher).unwrap();
    }
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1200),
        |_, _| {},
    );
    let want = (s.video_sent + s.audio_sent) as usize;
    drive(&mut clients, BOUND, |cs| {
        cs[1..].iter().all(|c| c.rtp.len() >= want)
    });
    for c in &clients[1..] {
        let (v, a) = indices(c);
        assert_eq!(v, all(s.video_sent), "{} video", c.name);
        assert_eq!(a, all(s.audio_sent), "{} audio", c.name);
    }
    let t = tcp_stats(&engine);
    assert_eq!(t.open, 3, "{t:?}");
    assert_eq!(t.authenticated, 3, "{t:?}");
    assert_eq!(t.closed_garbage + t.closed_peer, 0, "{t:?}");
    // Closing a session closes its connection.
    engine.close_session(ids[2]).unwrap();
    let closed = drive(&mut clients, BOUND, |_| {
        tcp_stats(&engine).closed_local == 1
    });
    assert!(closed, "{:?}", tcp_stats(&engine));
    engine.shutdown();
}

#[test]
fn tcp_media_forwards_uring() {
    tcp_media_forwards(BackendPreference::IoUring);
}

#[test]
fn tcp_media_forwards_portable() {
    tcp_media_forwards(BackendPreference::Portable);
}

/// A TCP subscriber that stops reading fills its connection's bounded send buffer: the
/// engine drops (and counts) what does not fit and closes it once it stays blocked; a
/// UDP subscriber on the same shard keeps receiving meanwhile and gets all real-time
/// media after.
fn stalled_tcp_peer(backend: BackendPreference) {
    let mut cfg = tcp_config(backend);
    cfg.io.tcp.send_buffer = 32 * 1024;
    cfg.io.tcp.blocked_timeout = Duration::from_secs(1);
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("stall").unwrap();
    let mut clients = vec![
        Client::connect_sdp("pub", &engine, Placement::Shard(0), &PUB_MEDIA, false),
        Client::connect_sdp_tcp("deaf", &engine, Placement::Shard(0), &SUB_MEDIA),
        Client::connect_sdp("udp", &engine, Placement::Shard(0), &SUB_MEDIA, false),
    ];
    let ids: Vec<_> = clients.iter().map(Client::id).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    engine.publish(room, ids[0]).unwrap();
    for id in &ids[1..] {
        engine.subscribe(room, *id, ids[0]).unwrap();
    }
    drive(&mut clients, Duration::from_millis(100), |_| false);
    clients[1].deaf = true;
    // Stream at about 30 times real time: the deaf peer's kernel buffers fill, then its
    // bounded send buffer (drops counted), which then never drains: it is closed.
    let mut s = Streamer::new();
    let start = Instant::now();
    let mut virtual_now = start;
    while tcp_stats(&engine).closed_blocked == 0 {
        assert!(
            start.elapsed() < BOUND,
            "stalled connection not closed: {:?}",
            tcp_stats(&engine)
        );
        virtual_now += Duration::from_millis(100);
        s.tick(&mut clients[0], virtual_now);
        // Let the UDP subscriber catch up (a burst is about 45 packets; the bound only
        // matters on a starved machine).
        let want = (s.video_sent + s.audio_sent) as usize;
        drive(&mut clients, Duration::from_secs(2), |cs| {
            cs[2].rtp.len() >= want
        });
    }
    assert!(tcp_send_full(&engine) > 0, "no tcp_send_full drop");
    // The bursts reached the UDP subscriber (an accelerated stream may lose a few packets
    // to its own leg's pacing, nothing to do with TCP)...
    let (v, a) = indices(&clients[2]);
    let (nv, na) = (s.video_sent, s.audio_sent);
    assert!(
        v.len() as u32 >= nv - nv / 50 && a.len() as u32 >= na - na / 50,
        "udp subscriber: {} of {nv} video, {} of {na} audio",
        v.len(),
        a.len()
    );
    // ...and real-time media after the stall reaches it completely.
    let overflows = udp_rcvbuf_errors();
    s.resync(Instant::now());
    stream(&mut clients, 0, &mut s, Duration::from_secs(1), |_, _| {});
    // Wait for the fresh packets themselves, not for a count: late repairs of the
    // accelerated phase still arrive now and would make a count complete early.
    let (sv, sa) = (s.video_sent, s.audio_sent);
    drive(&mut clients, BOUND, |cs| {
        let (v, a) = indices(&cs[2]);
        (nv..sv).all(|i| v.contains(&i)) && (na..sa).all(|i| a.contains(&i))
    });
    let (v, a) = indices(&clients[2]);
    let missing = |got: &BTreeSet<u32>, range: std::ops::Range<u32>| -> Vec<u32> {
        range.filter(|i| !got.contains(i)).collect()
    };
    let (mv, ma) = (missing(&v, nv..s.video_sent), missing(&a, na..s.audio_sent));
    let udp = engine.session_stats(ids[2]).ok();
    let udp = udp.map(|u| (u.estimate_bps, u.peer.paced_dropped));
    // Socket buffer overflows on this machine meanwhile (any socket, this test's or not).
    let overflows = udp_rcvbuf_errors().zip(overflows).map(|(b, a)| b - a);
    assert!(
        mv.is_empty(),
        "video after the stall: missing {mv:?} of {nv}..{}; udp (estimate, paced drops) \
         {udp:?}; UDP receive-buffer overflows meanwhile {overflows:?}; {:?}",
        s.video_sent,
        engine
            .stats()
            .map(|st| st.shards.iter().map(|s| s.drops).collect::<Vec<_>>())
    );
    assert!(
        ma.is_empty(),
        "audio after the stall: missing {ma:?} of {na}..{}; udp (estimate, paced drops) \
         {udp:?}; UDP receive-buffer overflows meanwhile {overflows:?}; {:?}",
        s.audio_sent,
        engine
            .stats()
            .map(|st| st.shards.iter().map(|s| s.drops).collect::<Vec<_>>())
    );
    engine.shutdown();
}

#[test]
fn stalled_tcp_peer_uring() {
    stalled_tcp_peer(BackendPreference::IoUring);
}

#[test]
fn stalled_tcp_peer_portable() {
    stalled_tcp_peer(BackendPreference::Portable);
}

/// Whether the engine closes `s` within the bound (EOF or reset on read).
fn closed_by_engine(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(BOUND)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            // The read timeout: still open.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            // Reset (unread bytes at close), or any other error of a dead connection.
            Err(_) => return true,
        }
    }
}

/// Garbage framing, a first frame that is no binding request for a known session, and
/// silence past the authentication timeout each close the connection; a valid session
/// over TCP is unaffected.
fn bad_tcp_peers(backend: BackendPreference) {
    let mut cfg = tcp_config(backend);
    cfg.io.tcp.auth_timeout = Duration::from_secs(1);
    let engine = Engine::start(cfg).unwrap();
    let addr: SocketAddr = engine.shard_announced_tcp(0).unwrap()[0];
    let mut good = vec![Client::connect_sdp_tcp(
        "good",
        &engine,
        Placement::Shard(0),
        &SUB_MEDIA,
    )];
    let id = good[0].id();
    wait_engine_connected(&engine, &mut good, &[id]);

    // An empty frame.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0, 0]).unwrap();
    assert!(closed_by_engine(s), "empty frame");
    // A frame longer than the engine takes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    assert!(closed_by_engine(s), "oversized frame");
    // RTP before any binding request.
    let mut s = TcpStream::connect(addr).unwrap();
    let mut rtp = vec![0, 20, 0x80, 96];
    rtp.resize(22, 0);
    s.write_all(&rtp).unwrap();
    assert!(closed_by_engine(s), "rtp first");
    // Silence.
    let s = TcpStream::connect(addr).unwrap();
    assert!(closed_by_engine(s), "silent connection");

    let t = tcp_stats(&engine);
    assert_eq!(t.closed_garbage, 3, "{t:?}");
    assert_eq!(t.closed_unauthenticated, 1, "{t:?}");
    assert_eq!(t.open, 1, "{t:?}");
    assert!(
        !drive(&mut good, Duration::from_millis(300), |c| c[0].failed),
        "the valid session must not fail"
    );
    engine.shutdown();
}

#[test]
fn bad_tcp_peers_uring() {
    bad_tcp_peers(BackendPreference::IoUring);
}

#[test]
fn bad_tcp_peers_portable() {
    bad_tcp_peers(BackendPreference::Portable);
}
