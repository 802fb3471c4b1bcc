//! Test peers: rtc-core `Rtc` (full ICE, RTP mode) on loopback UDP, driven by a small
//! loop in the test thread, against a running engine.
//!
//! Dev-only (`publish = false`): used by the engine's and the tools' tests and by
//! `engine/examples/fanout.rs`, as a dev-dependency. It depends on `engine` and
//! `rtc-core`; neither may depend on it outside `[dev-dependencies]`.

pub mod relay;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use engine::io::{BackendPreference, IoBackend, IoConfig, Received, open_backend};
use engine::{EngineConfig, EngineEvent, EngineHandle, Placement, SessionId, SessionSetup};
use rtc_core::ice::framing::{StreamDecoder, frame};
use rtc_core::ice::{Candidate, TcpType};
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::SdpAnswer;
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

pub const VIDEO_PT: u8 = 96;
pub const AUDIO_PT: u8 = 111;
pub const VIDEO_SSRC: u32 = 0x1111_0001;
pub const AUDIO_SSRC: u32 = 0x2222_0002;
pub const VIDEO_PAYLOAD: usize = 1000;
pub const AUDIO_PAYLOAD: usize = 120;

pub fn engine_config(backend: BackendPreference, shards: usize) -> EngineConfig {
    let mut cfg = EngineConfig {
        shards: Some(shards),
        pin: false,
        backend,
        ..EngineConfig::default()
    };
    cfg.io.recv_buffer_bytes = 1 << 20;
    cfg.io.send_buffer_bytes = 1 << 20;
    cfg.io.ring_entries = 256;
    cfg
}

/// How a client sends and receives.
pub enum Transport {
    /// A plain std socket (non-blocking).
    Std(UdpSocket),
    /// An engine I/O backend (GSO sends, so the engine sees GRO-coalesced receives).
    Backend(Box<dyn IoBackend>),
    /// ICE-TCP (RFC 6544 active candidate, RFC 4571 framing): one connection, opened to
    /// the first destination the `Rtc` sends to.
    Tcp(TcpPeer),
}

/// The client end of one ICE-TCP connection.
#[derive(Default)]
pub struct TcpPeer {
    /// The connection and the engine address it goes to (after the first send).
    pub conn: Option<(TcpStream, SocketAddr)>,
    decoder: StreamDecoder,
    /// Framed bytes not yet written (the socket is non-blocking).
    out: Vec<u8>,
}

impl TcpPeer {
    fn send(&mut self, dest: SocketAddr, data: &[u8]) {
        if self.conn.is_none() {
            let s = TcpStream::connect(dest).unwrap();
            s.set_nonblocking(true).unwrap();
            s.set_nodelay(true).unwrap();
            self.conn = Some((s, dest));
        }
        let mut buf = vec![0u8; data.len() + 2];
        let n = frame(data, &mut buf).unwrap();
        self.out.extend_from_slice(&buf[..n]);
        self.flush();
    }

    fn flush(&mut self) {
        let Some((s, _)) = &mut self.conn else {
            return;
        };
        while !self.out.is_empty() {
            match s.write(&self.out) {
                Ok(0) => break,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(_) => break,
            }
        }
    }

    /// Frames received, with the engine address they came from.
    fn recv(&mut self, inbox: &mut Vec<(SocketAddr, Vec<u8>)>) {
        let Some((s, from)) = &mut self.conn else {
            return;
        };
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.decoder.push(&buf[..n]).unwrap();
                    while let Some(d) = self.decoder.next_datagram() {
                        inbox.push((*from, d.to_vec()));
                    }
                }
                Err(_) => break,
            }
        }
        self.flush();
    }
}

#[derive(Debug, Clone)]
pub struct GotRtp {
    pub ssrc: u32,
    pub pt: u8,
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    /// The payload type is the section's RED one.
    pub red: bool,
    pub payload: Vec<u8>,
}

pub struct Client {
    pub name: String,
    pub rtc: Rtc,
    pub transport: Transport,
    pub addr: SocketAddr,
    pub next_timeout: Instant,
    pub connected: bool,
    pub failed: bool,
    pub rtp: Vec<GotRtp>,
    pub keyframe_requests: Vec<(Instant, u32)>,
    /// Streams the peer ended (RTCP BYE): (when, SSRC).
    pub ended: Vec<(Instant, u32)>,
    /// Drop outgoing STUN (consent checks) — lets a test measure the engine's steady
    /// state without connectivity checks.
    pub block_stun: bool,
    /// Stop reading and driving this client (its socket overflows; the kernel drops):
    /// for throughput runs where only the engine's work matters.
    pub deaf: bool,
    pub id: Option<SessionId>,
    pub mids: Vec<Mid>,
}

/// A non-blocking loopback UDP socket for a test client, with 4 MiB socket buffers
/// (the kernel caps them at `net.core.rmem_max`/`wmem_max`): at the default ~208 KiB a
/// client thread starved on a loaded machine loses datagrams in its own socket, and
/// audio (no NACK negotiated) cannot be repaired. (The engine's sockets ask for 1 MiB
/// in `engine_config`.)
pub fn client_socket() -> UdpSocket {
    // Binding an ephemeral loopback port only fails when the machine is out of ports
    // or descriptors, an environment fault for a test.
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    let sock = socket2::SockRef::from(&s);
    // Best effort: a smaller buffer only makes the test harsher.
    let _ = sock.set_recv_buffer_size(4 << 20);
    let _ = sock.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)
        .expect("set O_NONBLOCK on a fresh socket");
    s
}

/// Datagrams the kernel dropped because a UDP socket's receive buffer was full, since
/// boot (`RcvbufErrors` in `/proc/net/snmp`; `None` where that is not readable).
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

impl Client {
    /// A client around an `Rtc` already negotiated with engine session `id`, not yet
    /// connected, sending and receiving over `transport` from `addr`.
    pub fn new(
        name: &str,
        rtc: Rtc,
        transport: Transport,
        addr: SocketAddr,
        now: Instant,
        id: SessionId,
        mids: Vec<Mid>,
    ) -> Client {
        Client {
            name: name.to_string(),
            rtc,
            transport,
            addr,
            next_timeout: now,
            connected: false,
            failed: false,
            rtp: Vec::new(),
            keyframe_requests: Vec::new(),
            ended: Vec::new(),
            block_stun: false,
            deaf: false,
            id: Some(id),
            mids,
        }
    }

    /// A client whose offer has one section per entry of `media` (direction as the
    /// client sees it: `SendOnly` to publish, `RecvOnly` to subscribe).
    pub fn connect_sdp(
        name: &str,
        engine: &EngineHandle,
        placement: Placement,
        media: &[(MediaKind, Direction)],
        use_backend: bool,
    ) -> Client {
        let transport = if use_backend {
            let cfg = IoConfig {
                bind: vec!["127.0.0.1:0".parse().unwrap()],
                recv_buffer_bytes: 1 << 20,
                send_buffer_bytes: 1 << 20,
                ..IoConfig::default()
            };
            Transport::Backend(open_backend(BackendPreference::Portable, &cfg).unwrap())
        } else {
            Transport::Std(client_socket())
        };
        let addr = match &transport {
            Transport::Std(s) => s.local_addr().unwrap(),
            Transport::Backend(b) => b.local_addrs()[0],
            Transport::Tcp(_) => unreachable!("a UDP transport was opened above"),
        };
        Client::offer_to(name, transport, addr, media, |offer| {
            let info = engine
                .create_session(SessionSetup::Offer(offer), placement)
                .unwrap();
            (info.id, info.answer.unwrap())
        })
    }

    /// A client on a std socket whose SDP offer (one section per entry of `media`) is
    /// answered by `create`: (the engine session, the SDP answer). For sessions created
    /// another way than [`EngineHandle::create_session`] (e.g. the control plane).
    pub fn connect_offer(
        name: &str,
        media: &[(MediaKind, Direction)],
        create: impl FnOnce(String) -> (SessionId, String),
    ) -> Client {
        let s = client_socket();
        let addr = s.local_addr().unwrap();
        Client::offer_to(name, Transport::Std(s), addr, media, create)
    }

    fn offer_to(
        name: &str,
        transport: Transport,
        addr: SocketAddr,
        media: &[(MediaKind, Direction)],
        create: impl FnOnce(String) -> (SessionId, String),
    ) -> Client {
        let now = Instant::now();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
        let mut api = rtc.sdp_api();
        let mids: Vec<Mid> = media.iter().map(|(k, d)| api.add_media(*k, *d)).collect();
        let (offer, pending) = api.apply().unwrap();
        let (id, answer) = create(offer.to_sdp_string());
        let answer = SdpAnswer::from_sdp_string(&answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        Client::new(name, rtc, transport, addr, now, id, mids)
    }

    /// Like [`Client::connect_sdp`], but the client has only an active ICE-TCP candidate:
    /// it connects to the engine's passive TCP candidate (the engine needs
    /// [`EngineConfig::tcp_port`]).
    pub fn connect_sdp_tcp(
        name: &str,
        engine: &EngineHandle,
        placement: Placement,
        media: &[(MediaKind, Direction)],
    ) -> Client {
        let now = Instant::now();
        // Active candidates carry the discard port (RFC 6544 §4.5).
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
        let mut cand = Candidate::host(addr, Protocol::Tcp).unwrap();
        cand.set_tcp_type(TcpType::Active);
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mids: Vec<Mid> = media.iter().map(|(k, d)| api.add_media(*k, *d)).collect();
        let (offer, pending) = api.apply().unwrap();
        let info = engine
            .create_session(SessionSetup::Offer(offer.to_sdp_string()), placement)
            .unwrap();
        let answer = SdpAnswer::from_sdp_string(info.answer.as_deref().unwrap()).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        let transport = Transport::Tcp(TcpPeer::default());
        Client::new(name, rtc, transport, addr, now, info.id, mids)
    }

    /// A client set up through the direct API on both sides (no SDP): media sections
    /// `media`, sending on the SSRCs in `tx_ssrcs` (declared to the engine).
    pub fn connect_direct(
        name: &str,
        engine: &EngineHandle,
        placement: Placement,
        media: &[(Mid, MediaKind)],
        tx_ssrcs: &[(Mid, u32)],
    ) -> Client {
        let now = Instant::now();
        let s = client_socket();
        let addr = s.local_addr().unwrap();
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).unwrap());
        let params = engine::DirectParams {
            remote_ice: rtc.direct_api().local_ice_credentials(),
            remote_fingerprint: rtc.direct_api().local_dtls_fingerprint(),
            dtls_active: true,
            media: media.to_vec(),
            rx_ssrcs: tx_ssrcs.to_vec(),
        };
        let info = engine
            .create_session(SessionSetup::Direct(params), placement)
            .unwrap();
        assert!(info.answer.is_none());
        for a in &info.candidate_addrs {
            rtc.add_remote_candidate(Candidate::host(*a, Protocol::Udp).unwrap());
        }
        let mut api = rtc.direct_api();
        api.set_remote_ice_credentials(info.local_ice.clone());
        api.set_remote_fingerprint(info.fingerprint.clone());
        api.set_ice_controlling(true);
        api.start_dtls(false).unwrap();
        for (mid, kind) in media {
            api.declare_media(*mid, *kind);
        }
        Client::new(
            name,
            rtc,
            Transport::Std(s),
            addr,
            now,
            info.id,
            media.iter().map(|(m, _)| *m).collect(),
        )
    }

    pub fn id(&self) -> SessionId {
        self.id.unwrap()
    }

    fn send(&mut self, dest: SocketAddr, data: &[u8]) {
        if self.block_stun && matches!(data.first(), Some(0..=3)) {
            return;
        }
        match &mut self.transport {
            Transport::Std(s) => {
                let _ = s.send_to(data, dest);
            }
            Transport::Backend(b) => {
                b.queue_send(0, dest, data);
            }
            Transport::Tcp(t) => t.send(dest, data),
        }
    }

    /// Receives what is there, handles timers, drains output. Returns whether anything
    /// happened.
    pub fn step(&mut self, now: Instant) -> bool {
        if self.deaf {
            return false;
        }
        let mut busy = false;
        let mut inbox: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        match &mut self.transport {
            Transport::Std(s) => {
                let mut buf = [0u8; 2048];
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((n, from)) => inbox.push((from, buf[..n].to_vec())),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
            Transport::Backend(b) => {
                b.poll(Some(Duration::ZERO), &mut |r: Received<'_>| {
                    inbox.push((r.source, r.data.to_vec()));
                })
                .unwrap();
            }
            Transport::Tcp(t) => t.recv(&mut inbox),
        }
        let proto = match self.transport {
            Transport::Tcp(_) => Protocol::Tcp,
            _ => Protocol::Udp,
        };
        for (from, data) in inbox {
            busy = true;
            let _ = self.rtc.handle_input(Input::Receive(
                now,
                Receive {
                    proto,
                    source: from,
                    destination: self.addr,
                    contents: &data,
                },
            ));
        }
        if now >= self.next_timeout {
            let _ = self.rtc.handle_input(Input::Timeout(now));
        }
        self.drain(now);
        busy
    }

    pub fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let (dest, data) = (t.destination, t.contents.to_vec());
                    self.send(dest, &data);
                }
                Ok(Output::Event(ev)) => match ev {
                    Event::Connected => self.connected = true,
                    Event::Failed(_) => self.failed = true,
                    Event::RtpPacket(p) => self.rtp.push(GotRtp {
                        ssrc: p.ssrc,
                        pt: p.payload_type,
                        seq: p.seq_no,
                        timestamp: p.timestamp,
                        marker: p.marker,
                        red: p.red,
                        payload: p.payload().to_vec(),
                    }),
                    Event::KeyframeRequest(k) => self.keyframe_requests.push((now, k.ssrc)),
                    Event::StreamEnded(e) => self.ended.push((now, e.ssrc)),
                    _ => {}
                },
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    break;
                }
                Err(_) => break,
            }
        }
        if let Transport::Backend(b) = &mut self.transport {
            b.flush().unwrap();
        }
    }

    /// Writes one RTP packet (plaintext, the client's Rtc encrypts it).
    pub fn write_rtp(
        &mut self,
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let h = RtpHeader {
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..RtpHeader::default()
        };
        let mut buf = [0u8; 1500];
        let n = h.write(HeaderExtension::None, &mut buf).unwrap();
        buf[n..n + payload.len()].copy_from_slice(payload);
        self.rtc
            .direct_api()
            .write_rtp_packet(&buf[..n + payload.len()])
            .unwrap();
    }
}

/// Steps every client until `done` or `limit` passes. Returns whether `done` held.
pub fn drive(
    clients: &mut [Client],
    limit: Duration,
    mut done: impl FnMut(&[Client]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done(clients) {
            return true;
        }
        let now = Instant::now();
        if now > end {
            return false;
        }
        let mut busy = false;
        for c in clients.iter_mut() {
            busy |= c.step(now);
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

/// The payload of packet `index` of a kind: self-describing so receivers can check it
/// byte for byte.
pub fn payload(kind: MediaKind, index: u32) -> Vec<u8> {
    let (tag, len) = match kind {
        MediaKind::Video => (0xB1_u8, VIDEO_PAYLOAD),
        MediaKind::Audio => (0xA1_u8, AUDIO_PAYLOAD),
    };
    let mut p = Vec::with_capacity(len);
    p.push(tag);
    p.extend_from_slice(&index.to_be_bytes());
    let mut x = index.wrapping_mul(2_654_435_761);
    while p.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        p.push((x >> 16) as u8);
    }
    p
}

/// Parses (kind, index) from a payload made by [`payload`] and checks every byte.
pub fn check_payload(p: &[u8]) -> Option<(MediaKind, u32)> {
    let kind = match p.first()? {
        0xB1 => MediaKind::Video,
        0xA1 => MediaKind::Audio,
        _ => return None,
    };
    let index = u32::from_be_bytes(p.get(1..5)?.try_into().ok()?);
    (payload(kind, index) == p).then_some((kind, index))
}

/// Streams media from `publisher` (client index `pi`): video frames of three equal-size
/// packets every 33 ms and an audio packet every 20 ms, numbered from `start`, while
/// stepping all clients. Returns (video packets, audio packets) sent.
pub struct Streamer {
    pub video_sent: u32,
    pub audio_sent: u32,
    /// The SSRCs written on (default [`VIDEO_SSRC`], [`AUDIO_SSRC`]).
    pub video_ssrc: u32,
    pub audio_ssrc: u32,
    next_video: Instant,
    next_audio: Instant,
}

impl Default for Streamer {
    fn default() -> Self {
        Self::new()
    }
}

impl Streamer {
    pub fn new() -> Streamer {
        let now = Instant::now();
        Streamer {
            video_sent: 0,
            audio_sent: 0,
            video_ssrc: VIDEO_SSRC,
            audio_ssrc: AUDIO_SSRC,
            next_video: now,
            next_audio: now,
        }
    }

    /// A streamer writing on the given SSRCs: the publisher's negotiated send streams
    /// (`Rtc::tx_ssrc`), whose packets its `Rtc` keeps to answer NACKs with RTX. On the
    /// default SSRCs (not signalled) a NACK finds nothing to resend.
    pub fn with_ssrcs(video_ssrc: u32, audio_ssrc: u32) -> Streamer {
        Streamer {
            video_ssrc,
            audio_ssrc,
            ..Streamer::new()
        }
    }

    /// Restarts the schedule at `now` (after a pause, so no burst catches up).
    pub fn resync(&mut self, now: Instant) {
        self.next_video = now;
        self.next_audio = now;
    }

    /// Sends what is due at `now` from `c`.
    pub fn tick(&mut self, c: &mut Client, now: Instant) {
        while now >= self.next_video {
            for k in 0..3 {
                let i = self.video_sent;
                c.write_rtp(
                    VIDEO_PT,
                    i as u16,
                    3000 * (i / 3),
                    self.video_ssrc,
                    k == 2,
                    &payload(MediaKind::Video, i),
                );
                self.video_sent += 1;
            }
            self.next_video += Duration::from_millis(33);
        }
        while now >= self.next_audio {
            let i = self.audio_sent;
            c.write_rtp(
                AUDIO_PT,
                i as u16,
                960 * i,
                self.audio_ssrc,
                false,
                &payload(MediaKind::Audio, i),
            );
            self.audio_sent += 1;
            self.next_audio += Duration::from_millis(20);
        }
        c.drain(now);
    }
}

/// Streams for `dur`, with `publisher` the client at index `pi`; `each` runs every loop.
pub fn stream(
    clients: &mut [Client],
    pi: usize,
    s: &mut Streamer,
    dur: Duration,
    mut each: impl FnMut(&mut [Client], Instant),
) {
    let end = Instant::now() + dur;
    loop {
        let now = Instant::now();
        if now > end {
            break;
        }
        s.tick(&mut clients[pi], now);
        let mut busy = false;
        for c in clients.iter_mut() {
            busy |= c.step(now);
        }
        each(clients, now);
        if !busy {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

/// Waits for engine events until every id in `ids` connected.
pub fn wait_engine_connected(engine: &EngineHandle, clients: &mut [Client], ids: &[SessionId]) {
    wait_engine_connected_within(engine, clients, ids, Duration::from_secs(10));
}

/// [`wait_engine_connected`] with a time limit (e.g. longer under valgrind).
pub fn wait_engine_connected_within(
    engine: &EngineHandle,
    clients: &mut [Client],
    ids: &[SessionId],
    limit: Duration,
) {
    let mut pending: Vec<SessionId> = ids.to_vec();
    let ok = drive(clients, limit, |cs| {
        while let Ok(ev) = engine.events().try_recv() {
            if let EngineEvent::SessionConnected(id) = ev {
                pending.retain(|p| *p != id);
            }
        }
        pending.is_empty() && cs.iter().all(|c| c.connected)
    });
    assert!(ok, "not all connected: engine pending {pending:?}");
}

/// A new room `name` with one video publisher (`clients[0]`, placed on shard 0) and
/// `subscribers` video subscribers (placement `Auto`), all connected within `limit`,
/// published and subscribed: the fan-out set-up of `engine/examples/fanout.rs` and
/// `benches/examples/icount_forward.rs`.
pub fn fanout_room(
    engine: &EngineHandle,
    name: &str,
    subscribers: usize,
    limit: Duration,
) -> Vec<Client> {
    fanout_room_placed(engine, name, subscribers, limit, |_| Placement::Auto)
}

/// As [`fanout_room`], subscriber `i` (from 0) placed by `place(i)` (the publisher on
/// shard 0).
pub fn fanout_room_placed(
    engine: &EngineHandle,
    name: &str,
    subscribers: usize,
    limit: Duration,
    place: impl Fn(usize) -> Placement,
) -> Vec<Client> {
    let room = engine.create_room(name).unwrap();
    let pub_media = [(MediaKind::Video, Direction::SendOnly)];
    let sub_media = [(MediaKind::Video, Direction::RecvOnly)];
    let mut clients = vec![Client::connect_sdp(
        "pub",
        engine,
        Placement::Shard(0),
        &pub_media,
        false,
    )];
    for i in 0..subscribers {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            engine,
            place(i),
            &sub_media,
            false,
        ));
    }
    let ids: Vec<_> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected_within(engine, &mut clients, &ids, limit);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    for c in &clients[1..] {
        engine.subscribe(room, c.id(), publisher).unwrap();
    }
    clients
}
