//! Hardening tests: what a hostile or broken peer can make an `Rtc` do (a `#[cfg(test)]`
//! module of `rtc`).
//!
//! The pair here is two `Rtc` joined in memory on a virtual clock; the tests reach
//! into the crate (raw RTCP into the receive path, send-stream counters) where the
//! public API cannot.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Rtc;
use crate::event::{Event, ResendRequest};
use crate::ice::Candidate;
use crate::io::{Input, Output, Protocol, Receive};
use crate::media::{Codec, MediaKind, Mid};
use crate::rtcp::{Nack, NackPair};
use crate::rtp::ExtensionValues;
use crate::sdp::Direction;

const A_ADDR: &str = "10.0.0.1:5000";
const B_ADDR: &str = "10.0.0.2:6000";

/// Counts the allocations made on this thread inside [`in_rtc`] (the harness's own,
/// outside it, are not counted).
struct Counting;

thread_local! {
    static IN_RTC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static RTC_ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Counting {
    fn count() {
        // `try_with`: an allocation during thread teardown is simply not counted.
        let _ = IN_RTC.try_with(|f| {
            if f.get() {
                let _ = RTC_ALLOCS.try_with(|n| n.set(n.get() + 1));
            }
        });
    }
}

// SAFETY: every call is passed on unchanged to the system allocator.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        Counting::count();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        Counting::count();
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f` (a call into an `Rtc`) with its allocations counted in `RTC_ALLOCS`.
fn in_rtc<R>(f: impl FnOnce() -> R) -> R {
    IN_RTC.with(|c| c.set(true));
    let r = f();
    IN_RTC.with(|c| c.set(false));
    r
}

/// Allocations counted inside `Rtc` calls on this thread so far.
fn rtc_allocs() -> u64 {
    RTC_ALLOCS.with(|n| n.get())
}

/// Two `Rtc`, `a` offering one video section to `b`, and the datagrams in flight.
struct Pair {
    now: Instant,
    peers: [Rtc; 2],
    addrs: [SocketAddr; 2],
    /// (to, from, bytes) not yet delivered.
    in_flight: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// Whether the network delivers anything.
    link_up: bool,
    /// Events seen per peer, as debug strings (what these tests look at).
    events: [Vec<String>; 2],
    /// Earliest deadline each peer reported.
    timeouts: [Instant; 2],
    /// Datagrams each peer emitted.
    sent: [u64; 2],
    /// Resend requests each peer reported.
    resend_requests: [Vec<ResendRequest>; 2],
    /// RTP datagrams from `a` the network loses: `(SSRC, sequence number)`, `None`
    /// for the next one on that SSRC that is not padding. Each entry loses one.
    lose: Vec<(u32, Option<u16>)>,
}

impl Pair {
    fn new(rtp_mode: bool) -> (Pair, Mid) {
        Pair::with_config(Rtc::builder().set_rtp_mode(rtp_mode))
    }

    /// `a` built from `config`, `b` with the defaults in the same mode.
    fn with_config(config: super::RtcConfig) -> (Pair, Mid) {
        let rtp_mode = config.rtp_mode();
        let now = Instant::now();
        let addrs: [SocketAddr; 2] = [
            A_ADDR.parse().expect("test address"),
            B_ADDR.parse().expect("test address"),
        ];
        let mut peers = [
            config.build(now).expect("test rtc"),
            Rtc::builder()
                .set_rtp_mode(rtp_mode)
                .build(now)
                .expect("test rtc"),
        ];
        for (rtc, addr) in peers.iter_mut().zip(addrs) {
            rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("host"));
        }
        let [a, b] = &mut peers;
        let mut api = a.sdp_api();
        let video = api.add_media(MediaKind::Video, Direction::SendRecv);
        let (offer, pending) = api.apply().expect("an offer");
        let answer = b.sdp_api().accept_offer(offer).expect("answer");
        a.sdp_api()
            .accept_answer(pending, answer)
            .expect("accept answer");
        let pair = Pair {
            now,
            peers,
            addrs,
            in_flight: Vec::new(),
            link_up: true,
            events: [Vec::new(), Vec::new()],
            timeouts: [now; 2],
            sent: [0; 2],
            resend_requests: [Vec::new(), Vec::new()],
            lose: Vec::new(),
        };
        (pair, video)
    }

    /// Drains both peers' outputs into the network.
    fn drain(&mut self) {
        for i in 0..2 {
            loop {
                match in_rtc(|| self.peers[i].poll_output()).expect("poll_output") {
                    Output::Transmit(t) => {
                        self.sent[i] += 1;
                        if i == 0 && loses(&mut self.lose, t.contents) {
                            continue;
                        }
                        if self.link_up {
                            self.in_flight.push((1 - i, t.source, t.contents.to_vec()));
                        }
                    }
                    Output::Event(e) => {
                        let s = match &e {
                            Event::RtpPacket(p) => {
                                format!("RtpPacket {} {}", p.ssrc, p.seq_no as u16)
                            }
                            Event::ResendRequest(r) => {
                                self.resend_requests[i].push(*r);
                                format!("{r:?}")
                            }
                            other => format!("{other:?}"),
                        };
                        self.events[i].push(s);
                    }
                    Output::Timeout(t) => {
                        self.timeouts[i] = t;
                        break;
                    }
                }
            }
        }
    }
}

/// Whether the network loses `datagram` from `a` (see [`Pair::lose`]), removing the
/// entry that loses it. SRTP leaves the RTP header readable.
fn loses(lose: &mut Vec<(u32, Option<u16>)>, datagram: &[u8]) -> bool {
    let (Some(&b0), Some(&b1), Some(seq), Some(ssrc)) = (
        datagram.first(),
        datagram.get(1),
        datagram.get(2..4),
        datagram.get(8..12),
    ) else {
        return false;
    };
    // RTP version 2, not RTCP (packet types 192..=223), not padding.
    if b0 >> 6 != 2 || (192..=223).contains(&b1) || b0 & 0x20 != 0 {
        return false;
    }
    let seq = u16::from_be_bytes([seq[0], seq[1]]);
    let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
    match lose
        .iter()
        .position(|&(s, q)| s == ssrc && q.is_none_or(|q| q == seq))
    {
        Some(at) => {
            lose.remove(at);
            true
        }
        None => false,
    }
}

impl Pair {
    /// Delivers what is in flight (instantly), or else advances to the earliest
    /// deadline of the peers still alive, but not past `limit`.
    fn step(&mut self, limit: Instant) {
        self.drain();
        if self.in_flight.is_empty() {
            let next = (0..2)
                .filter(|&i| self.peers[i].is_alive())
                .map(|i| self.timeouts[i])
                .min()
                .unwrap_or(limit)
                .min(limit);
            self.now = self.now.max(next);
            for rtc in &mut self.peers {
                if rtc.is_alive() {
                    in_rtc(|| rtc.handle_input(Input::Timeout(self.now))).expect("timeout input");
                }
            }
        }
        for (to, source, data) in std::mem::take(&mut self.in_flight) {
            let r = Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addrs[to],
                contents: &data,
            };
            if self.peers[to].is_alive() {
                in_rtc(|| self.peers[to].handle_input(Input::Receive(self.now, r)))
                    .expect("receive input");
            }
        }
    }

    /// Steps until `done` or until `limit` of virtual time passed.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            if done(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            self.step(end);
        }
        panic!("the pair made no progress");
    }

    fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(10), |p| {
            p.peers.iter().all(|r| r.is_connected())
        });
        assert!(ok, "the pair connects");
    }

    /// Advances the clock by `d` with nothing delivered in between but timers.
    fn advance(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }
}

/// Sends `count` RTP packets of `payload_len` bytes on `a`'s video stream, one per
/// millisecond, delivering them to `b`.
fn send_video(p: &mut Pair, video: Mid, count: u64, payload_len: usize) {
    send_video_from(p, video, 0, count, payload_len);
}

/// [`send_video`] with sequence numbers from `first`.
fn send_video_from(p: &mut Pair, video: Mid, first: u64, count: u64, payload_len: usize) {
    let pt = p.peers[0]
        .media_info(video)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8 negotiated");
    let payload = vec![0x10u8; payload_len];
    for i in first..first + count {
        write_video(p, 0, video, pt, i, (i * 90) as u32, &payload);
        p.advance(Duration::from_millis(1));
    }
}

/// Peer `from` writes one RTP packet on its video stream at the pair's current time.
fn write_video(p: &mut Pair, from: usize, video: Mid, pt: u8, seq: u64, ts: u32, payload: &[u8]) {
    let now = p.now;
    p.peers[from]
        .stream_tx(video)
        .expect("the peer sends video")
        .write_rtp(
            pt,
            seq,
            ts,
            now,
            false,
            &ExtensionValues::default(),
            payload,
        )
        .expect("write_rtp");
}

/// A NACK from `b` to `a` of `items` entries each naming 17 packets, spread over
/// the last 1024 sequence numbers `a` sent.
fn nack_storm(p: &Pair, video: Mid, items: usize) -> Vec<u8> {
    let ssrc = p.peers[0].tx_ssrc(video).expect("a's video ssrc");
    let tx = p.peers[0]
        .session
        .tx
        .iter()
        .find(|t| t.ssrc == ssrc)
        .expect("a's send stream");
    let highest = tx.highest_sent.expect("a sent packets") as u16;
    let pairs: Vec<NackPair> = (0..items)
        .map(|i| NackPair {
            pid: highest
                .wrapping_sub(1000)
                .wrapping_add((i % 60) as u16 * 16),
            blp: 0xffff,
        })
        .collect();
    let mut buf = vec![0u8; 12 + 4 * items];
    let n =
        Nack::write_pairs(p.peers[1].session.rtcp_ssrc, ssrc, &pairs, &mut buf).expect("NACK fits");
    buf.truncate(n);
    buf
}

fn rtx_sent(rtc: &Rtc) -> u64 {
    rtc.session.tx.iter().map(|t| t.rtx_sent).sum()
}

#[test]
fn nack_storm_packet_yields_bounded_retransmissions() {
    let (mut p, video) = Pair::new(true);
    p.connect();
    send_video(&mut p, video, 1100, 1000);
    p.drain();
    p.in_flight.clear();
    let before_rtx = rtx_sent(&p.peers[0]);
    let before_sent = p.sent[0];
    // One storm packet: 500 items x (pid + 16 in the mask) = 8500 requests.
    let storm = nack_storm(&p, video, 500);
    let now = p.now;
    p.peers[0].handle_rtcp_packets(now, &storm);
    p.drain();
    let rtx = rtx_sent(&p.peers[0]) - before_rtx;
    let datagrams = p.sent[0] - before_sent;
    assert!(rtx > 0, "a NACK for held packets is answered");
    assert!(rtx <= 17, "{rtx} retransmissions for one NACK packet");
    assert!(datagrams <= 17, "{datagrams} datagrams for one NACK packet");
}

#[test]
fn ice_without_a_working_pair_fails_after_the_connect_timeout() {
    let (mut p, _video) = Pair::new(false);
    p.link_up = false;
    let start = p.now;
    // Alive, and nothing reported, until 30 s have passed...
    p.run_until(Duration::from_millis(29_990), |_| false);
    for (i, rtc) in p.peers.iter().enumerate() {
        assert!(rtc.is_alive(), "peer {i} alive before 30 s");
        assert!(!p.events[i].iter().any(|e| e.starts_with("Failed")));
    }
    // ... and failed at 30 s, reached by a caller that only drives timeouts.
    let failed = p.run_until(Duration::from_secs(5), |p| {
        p.peers.iter().all(|r| !r.is_alive())
    });
    assert!(failed, "both peers give up");
    assert!(p.now - start >= Duration::from_secs(30));
    assert!(
        p.now - start <= Duration::from_millis(30_010),
        "{:?}",
        p.now - start
    );
    p.drain();
    for (i, events) in p.events.iter().enumerate() {
        let failed: Vec<_> = events.iter().filter(|e| e.starts_with("Failed")).collect();
        assert_eq!(
            failed,
            ["Failed(IceConnectTimeout)"],
            "peer {i}: {events:?}"
        );
    }
}

#[test]
fn a_connected_pair_outlives_the_connect_timeout() {
    let (mut p, video) = Pair::new(true);
    p.connect();
    p.advance(Duration::from_secs(40));
    send_video(&mut p, video, 10, 100);
    for (i, rtc) in p.peers.iter().enumerate() {
        assert!(rtc.is_connected(), "peer {i} still connected after 40 s");
        assert!(!p.events[i].iter().any(|e| e.starts_with("Failed")));
    }
}

/// Drives `rtc` by timeouts only, as a caller with no traffic does, until it dies or
/// `limit` passes; returns when it died and the reason it reported.
fn drive_timeouts_only(
    rtc: &mut Rtc,
    start: Instant,
    limit: Duration,
) -> Option<(Duration, String)> {
    let mut now = start;
    let mut failed = None;
    while now - start <= limit {
        loop {
            match rtc.poll_output().expect("poll_output") {
                Output::Event(Event::Failed(r)) => failed = Some((now - start, format!("{r:?}"))),
                Output::Timeout(t) => {
                    now = t;
                    break;
                }
                _ => {}
            }
        }
        if failed.is_some() {
            return failed;
        }
        if rtc.handle_input(Input::Timeout(now)).is_err() {
            return Some((now - start, "not alive".into()));
        }
    }
    None
}

#[test]
fn ice_lite_agent_times_out_by_its_configured_deadline() {
    let start = Instant::now();
    let creds = crate::ice::IceCreds {
        ufrag: "abcd".into(),
        pass: "0123456789012345678901".into(),
    };
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_ice_connect_timeout(Some(Duration::from_secs(5)))
        .build(start)
        .expect("rtc");
    rtc.direct_api().set_remote_ice_credentials(creds.clone());
    let (at, reason) =
        drive_timeouts_only(&mut rtc, start, Duration::from_secs(60)).expect("it fails");
    assert_eq!(at, Duration::from_secs(5));
    assert_eq!(reason, "IceConnectTimeout");
    assert!(!rtc.is_alive());

    // Without the timeout it waits for as long as the caller drives it.
    let mut rtc = Rtc::builder()
        .set_ice_lite(true)
        .set_ice_connect_timeout(None)
        .build(start)
        .expect("rtc");
    rtc.direct_api().set_remote_ice_credentials(creds);
    assert_eq!(
        drive_timeouts_only(&mut rtc, start, Duration::from_secs(60)),
        None
    );
    assert!(rtc.is_alive());
}

/// A plaintext VP8 packet on `ssrc` with sequence number `seq`.
fn raw_vp8(ssrc: u32, pt: u8, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x10, 0, 1, 2, 3]);
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

#[test]
fn external_rtx_cache_answers_resend_requests() {
    let (mut p, video) = Pair::with_config(
        Rtc::builder()
            .set_rtp_mode(true)
            .set_rtx_buffer(0, Duration::ZERO),
    );
    p.connect();
    let ssrc = p.peers[0].stream_tx(video).expect("a sends video").ssrc();
    let pt = p.peers[0]
        .media_info(video)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8");
    // The application's own cache: what it sent, by sequence number.
    let mut cache = std::collections::HashMap::new();
    for seq in 100u16..=110 {
        let packet = raw_vp8(ssrc, pt, seq);
        p.link_up = seq != 105; // 105 is lost
        p.peers[0]
            .direct_api()
            .write_rtp_packet(&packet)
            .expect("write");
        cache.insert(seq, packet);
        p.advance(Duration::from_millis(2));
    }
    p.link_up = true;
    let got_105 = |p: &Pair| {
        p.events[1]
            .iter()
            .any(|e| *e == format!("RtpPacket {ssrc} 105"))
    };
    assert!(!got_105(&p));
    // Answer resend requests from the cache until `b` has the lost packet.
    let done = p.run_until(Duration::from_secs(2), |p| {
        !p.resend_requests[0].is_empty() || got_105(p)
    });
    assert!(done, "a NACK for 105 surfaces as a resend request");
    let requests = std::mem::take(&mut p.resend_requests[0]);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!((requests[0].mid, requests[0].ssrc), (video, ssrc));
    assert_eq!(requests[0].seqs(), [105]);
    for r in &requests {
        for seq in r.seqs() {
            let packet = cache.get(seq).expect("the application has it");
            let outcome = p.peers[0]
                .direct_api()
                .write_rtx(r.ssrc, packet)
                .expect("write_rtx");
            assert_eq!(outcome, crate::direct::RtxOutcome::Queued);
        }
    }
    assert_eq!(rtx_sent(&p.peers[0]), 1);
    assert!(
        p.run_until(Duration::from_millis(100), got_105),
        "b repaired 105 from RTX"
    );

    // A storm asks for at most one interval's budget.
    send_video_from(&mut p, video, 200, 1100, 200);
    p.drain();
    p.resend_requests[0].clear();
    let storm = nack_storm(&p, video, 500);
    let now = p.now;
    p.peers[0].handle_rtcp_packets(now, &storm);
    p.drain();
    let asked: usize = p.resend_requests[0].iter().map(|r| r.seqs().len()).sum();
    assert!(
        (1..=16).contains(&asked),
        "{asked} packets requested by one storm"
    );
}

#[test]
fn a_lost_retransmission_is_repaired_by_a_repeated_nack_on_a_tiny_rtt_path() {
    let (mut p, video) = Pair::new(true);
    p.connect();
    let ssrc = p.peers[0].tx_ssrc(video).expect("a's video ssrc");
    let rtx_ssrc = p.peers[0].tx_rtx_ssrc(video).expect("a's RTX ssrc");
    let pt = p.peers[1]
        .media_info(video)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8 negotiated");
    // `b` sends too, so that `a`'s receiver reports give it a round-trip time: the
    // link delivers instantly, a round trip of (almost) nothing.
    let payload = [0x10u8; 200];
    for i in 0..150u64 {
        write_video(&mut p, 1, video, pt, i, (i * 900) as u32, &payload);
        send_video_from(&mut p, video, i, 1, 200);
        p.advance(Duration::from_millis(19));
    }
    let rtt = p.peers[1]
        .session
        .tx
        .iter()
        .find_map(|t| t.rtt)
        .expect("b measured a round-trip time");
    assert!(rtt < Duration::from_millis(2), "a tiny round trip: {rtt:?}");
    // Packet 151 and its first retransmission are lost.
    p.lose = vec![(ssrc, Some(151)), (rtx_ssrc, None)];
    send_video_from(&mut p, video, 150, 3, 200);
    let got_151 = |p: &Pair| {
        p.events[1]
            .iter()
            .any(|e| *e == format!("RtpPacket {ssrc} 151"))
    };
    let repaired = p.run_until(Duration::from_secs(2), got_151);
    assert!(p.lose.is_empty(), "both losses happened: {:?}", p.lose);
    let asked = p.peers[1]
        .session
        .rx_streams
        .iter()
        .find(|st| st.ssrc == ssrc)
        .map(|st| st.nack.stats());
    let answered = p.peers[0]
        .session
        .tx
        .iter()
        .find(|t| t.ssrc == ssrc)
        .map(|t| t.resend.stats());
    assert!(
        repaired,
        "a repeated NACK brought a second retransmission: b {asked:?}, a {answered:?}"
    );
}

/// A received video stream holds its NACK ring from its first packet: a ring allocated
/// at the first loss was an allocation in the middle of forwarding (an engine shard
/// that had forwarded loss-free for seconds allocated 32 KiB when its link first lost
/// a packet).
#[test]
fn a_video_stream_holds_its_nack_ring_before_its_first_loss() {
    let (mut p, video) = Pair::new(true);
    p.connect();
    send_video(&mut p, video, 20, 200);
    p.drain();
    let rx = &p.peers[1].session.rx_streams;
    let st = rx
        .iter()
        .find(|s| s.mid == Some(video) && s.rtx_of.is_none())
        .expect("b receives a's video");
    assert_eq!(st.nack.stats().given_up, 0, "nothing was lost");
    assert!(
        st.nack.heap_bytes() > 0,
        "the video stream has no NACK ring until its first loss"
    );
}

/// ICE consent checks of a connected, idle pair allocate nothing: the check keeps its
/// request for retransmissions and sends a copy in a spent buffer (it cloned the
/// request into a new exact-size buffer, which grew again when reused: two allocations
/// per check, seen in an engine shard's steady state).
#[test]
fn consent_checks_of_a_connected_pair_allocate_nothing() {
    let (mut p, _video) = Pair::new(true);
    p.connect();
    // Warm-up: queues and buffers reach their working sizes.
    p.advance(Duration::from_secs(20));
    let before = rtc_allocs();
    // About a dozen consent checks per side (RFC 7675: every 4-6 s).
    p.advance(Duration::from_secs(60));
    let made = rtc_allocs() - before;
    assert!(p.peers.iter().all(|r| r.is_connected()), "still connected");
    assert_eq!(made, 0, "allocations in a minute of consent checks");
}

/// A datagram read late (a busy server) but stamped with its arrival
/// (`Input::ReceiveArrived`, e.g. the kernel's receive timestamp) is reported at that
/// arrival in the transport-wide feedback: three packets that arrived 10 ms apart but
/// were read together show 10 ms receive deltas, not 0 — the sender's delay-based
/// estimate sees the network, not the reader's scheduling.
#[test]
fn transport_feedback_reports_the_arrival_of_a_datagram_read_late() {
    let (mut p, video) = Pair::new(true);
    p.connect();
    send_video(&mut p, video, 5, 200);
    p.advance(Duration::from_millis(300));
    let pt = p.peers[0]
        .media_info(video)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8 negotiated");
    // Three packets leave `a`; the network holds them back.
    p.link_up = false;
    for i in 5..8u64 {
        write_video(&mut p, 0, video, pt, i, (i * 90) as u32, &[0x10; 200]);
    }
    let mut held = Vec::new();
    loop {
        match p.peers[0].poll_output().expect("poll_output") {
            // RTP only (RTCP, packet types 192..=223, is not in transport feedback).
            Output::Transmit(t) if !matches!(t.contents.get(1), Some(192..=223)) => {
                held.push(t.contents.to_vec());
            }
            Output::Transmit(_) => {}
            Output::Event(_) => {}
            Output::Timeout(_) => break,
        }
    }
    assert_eq!(held.len(), 3, "RTP datagrams held");
    // `b` reads them all at once, 40 ms later; they arrived 10 ms apart from 30 ms ago.
    let read_at = p.now + Duration::from_millis(40);
    let first = p.now + Duration::from_millis(10);
    let b = &mut p.peers[1];
    // What `b` recorded before these is not what this test looks at.
    let mut buf = [0u8; 1500];
    while b.session.twcc_rx.poll_feedback(read_at, &mut buf).is_some() {}
    for (k, data) in held.iter().enumerate() {
        let r = Receive {
            proto: Protocol::Udp,
            source: p.addrs[0],
            destination: p.addrs[1],
            contents: data,
        };
        let arrival = first + Duration::from_millis(10 * k as u64);
        b.handle_input(Input::ReceiveArrived {
            now: read_at,
            arrival,
            receive: r,
        })
        .expect("receive input");
    }
    let n = b
        .session
        .twcc_rx
        .poll_feedback(read_at + Duration::from_secs(1), &mut buf)
        .expect("feedback for the three packets");
    let fb = match crate::rtcp::RtcpPacket::iter(&buf[..n]).next() {
        Some(Ok(crate::rtcp::RtcpPacket::TransportFeedback(t))) => t,
        other => panic!("not a transport feedback: {other:?}"),
    };
    let deltas: Vec<i64> = fb.iter().filter_map(|(_, s)| s.delta_us()).collect();
    // Handling the later inputs may already have sent the first packet's feedback (it
    // was due); the packets still pending are the last ones, each 10 ms after the one
    // before it. Read at one instant, their deltas were 0.
    assert!(deltas.len() >= 2, "{fb:?}");
    assert!(
        deltas[1..].iter().all(|&d| d == 10_000),
        "receive deltas of packets 10 ms apart: {deltas:?}"
    );
}
