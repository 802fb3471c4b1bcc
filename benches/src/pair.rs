//! Two `Rtc`s connected in memory (RTP mode, one video m-line, no sockets): the set-up
//! the `rtc` criterion bench and the `icount_rtc` example share.
//!
//! Everything here is a harness: an error is a broken set-up, so it panics with the
//! step that failed.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::ExtensionValues;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

/// The address A's candidate claims (never bound: datagrams are handed over in memory).
pub const A: &str = "10.0.0.1:5000";
/// The address B's candidate claims.
pub const B: &str = "10.0.0.2:6000";

/// `s` as a socket address.
///
/// # Panics
/// When `s` is not one (the callers pass the constants above).
pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

/// Delivers `from`'s datagrams to `to` until `from` has nothing more to send; returns
/// the RTP packets `from` emitted as events (their payloads are read, so the work of
/// receiving them is not optimised away).
pub fn pump(
    from: &mut Rtc,
    to: &mut Rtc,
    from_addr: SocketAddr,
    to_addr: SocketAddr,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> usize {
    let mut events = 0;
    loop {
        match from.poll_output().expect("poll_output") {
            Output::Transmit(t) => {
                scratch.clear();
                scratch.extend_from_slice(t.contents);
            }
            Output::Event(Event::RtpPacket(p)) => {
                black_box(p.payload());
                events += 1;
                continue;
            }
            Output::Event(_) => continue,
            Output::Timeout(_) => return events,
        }
        let r = Receive {
            proto: Protocol::Udp,
            source: from_addr,
            destination: to_addr,
            contents: scratch,
        };
        to.handle_input(Input::Receive(now, r))
            .expect("handle_input");
    }
}

/// A (pacing on or off) and B in RTP mode, negotiated over SDP with one send-receive
/// video m-line and connected (ICE + DTLS) on a simulated clock; returns both, the
/// m-line and the clock.
pub fn connected(pacing: bool) -> (Rtc, Rtc, Mid, Instant) {
    let mut now = Instant::now();
    let build = |pacing, now| {
        Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(None)
            .set_pacing(pacing)
            .build(now)
            .expect("build")
    };
    let (mut a, mut b) = (build(pacing, now), build(false, now));
    a.add_local_candidate(Candidate::host(addr(A), Protocol::Udp).expect("candidate"));
    b.add_local_candidate(Candidate::host(addr(B), Protocol::Udp).expect("candidate"));
    let mut api = a.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer text");
    let answer = b.sdp_api().accept_offer(offer).expect("answer");
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).expect("answer text");
    a.sdp_api().accept_answer(pending, answer).expect("accept");
    let mut scratch = Vec::new();
    for _ in 0..500 {
        if a.is_connected() && b.is_connected() {
            break;
        }
        now += Duration::from_millis(5);
        a.handle_input(Input::Timeout(now)).expect("timeout");
        b.handle_input(Input::Timeout(now)).expect("timeout");
        pump(&mut a, &mut b, addr(A), addr(B), now, &mut scratch);
        pump(&mut b, &mut a, addr(B), addr(A), now, &mut scratch);
    }
    assert!(
        a.is_connected() && b.is_connected(),
        "handshake did not finish"
    );
    (a, b, mid, now)
}

/// Writes packet `seq` (marker set, 90 kHz timestamps 3000 apart, no extensions) on
/// A's send stream for `mid`.
pub fn write(a: &mut Rtc, mid: Mid, pt: u8, seq: u64, now: Instant, payload: &[u8]) {
    a.stream_tx(mid)
        .expect("send stream")
        .write_rtp(
            pt,
            seq,
            (seq * 3000) as u32,
            now,
            true,
            &ExtensionValues::default(),
            payload,
        )
        .expect("write_rtp");
}
