//! Deterministic cost of the RTP-mode path through two connected `Rtc`, for instruction
//! counting under valgrind's callgrind (this VM has no hardware counters and its timing
//! noise is ±15–30 %, instruction counts repeat exactly):
//!
//! ```sh
//! cargo build --release -p benches --example icount_rtc
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='*measured*' target/release/examples/icount_rtc 2000
//! callgrind_annotate /tmp/cg.out | head -n 30   # "PROGRAM TOTALS" / iterations
//! ```
//!
//! One iteration = one 1100-byte RTP packet written on A's send stream (header,
//! extensions, SRTP protect), carried to B (SRTP unprotect, parse, feedback
//! bookkeeping, `Event::RtpPacket`) plus whatever either side answers. Only the calls
//! inside `measured` are collected, so the handshake is excluded. Uses the public API
//! only, so the same file builds on older revisions for before/after comparisons.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::ExtensionValues;
use rtc_core::sdp::{Codec, Direction};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";

fn addr(s: &str) -> SocketAddr {
    // Constant, valid socket addresses.
    s.parse().expect("valid address")
}

/// Delivers `from`'s datagrams to `to`; returns the RTP events `from` emitted.
fn pump(
    from: &mut Rtc,
    to: &mut Rtc,
    from_addr: SocketAddr,
    to_addr: SocketAddr,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> usize {
    let mut events = 0;
    loop {
        // A harness: an error here is a broken set-up, worth a panic.
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

fn connected() -> (Rtc, Rtc, Mid, Instant) {
    let mut now = Instant::now();
    let build = |now| {
        Rtc::builder()
            .set_rtp_mode(true)
            .set_stats_interval(None)
            .build(now)
            .expect("build")
    };
    let (mut a, mut b) = (build(now), build(now));
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

#[inline(never)]
fn measured(a: &mut Rtc, b: &mut Rtc, mid: Mid, now: Instant, iterations: u64) -> usize {
    let pt = a
        .media_info(mid)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8 negotiated");
    let payload = [0x5au8; 1100];
    let mut scratch = Vec::with_capacity(2048);
    let mut received = 0;
    for seq in 1..=iterations {
        a.stream_tx(mid)
            .expect("send stream")
            .write_rtp(
                pt,
                seq,
                (seq * 3000) as u32,
                now,
                true,
                &ExtensionValues::default(),
                &payload,
            )
            .expect("write_rtp");
        pump(a, b, addr(A), addr(B), now, &mut scratch);
        received += pump(b, a, addr(B), addr(A), now, &mut scratch);
    }
    received
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (mut a, mut b, mid, now) = connected();
    let received = measured(&mut a, &mut b, mid, now, iterations);
    assert_eq!(received as u64, iterations, "every packet delivered");
    println!("{iterations} packets written and received");
}
