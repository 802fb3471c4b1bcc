//! Unit tests of the send pacing (a `#[cfg(test)]` module of `rtc::pacing`).

use super::twcc_offset;

#[test]
fn finds_the_transport_cc_value_in_both_extension_forms() {
    // One-byte form: mid (id 1, 2 bytes), padding, transport-cc (id 3).
    let mut p = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    p.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x11, b'a', b'b', 0, 0x31, 0xAA, 0xBB, 0]);
    p.extend_from_slice(&[1, 2, 3]);
    assert_eq!(twcc_offset(&p, 3), Some(21));
    assert_eq!(&p[21..23], &[0xAA, 0xBB]);
    assert_eq!(twcc_offset(&p, 5), None);
    // Two-byte form.
    let mut q = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(&[0x10, 0x00, 0, 2, 7, 1, b'x', 0, 3, 2, 0xCC, 0xDD]);
    assert_eq!(twcc_offset(&q, 3), Some(22));
    // No extension, truncated, or a length running past the end.
    assert_eq!(twcc_offset(&p[..12], 3), None);
    let mut r = p.clone();
    r[0] &= !0x10;
    assert_eq!(twcc_offset(&r, 3), None);
    assert_eq!(twcc_offset(&p[..18], 3), None);
    let mut s = p.clone();
    s[15] = 200;
    assert_eq!(twcc_offset(&s, 3), None);
    assert_eq!(twcc_offset(&[], 3), None);
}

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::direct::{RtxOutcome, RtxRefusal};
use crate::ice::Candidate;
use crate::io::{Input, Output, Protocol, Receive};
use crate::media::{MediaKind, Mid};
use crate::pacer::PacketClass;
use crate::rtp::ExtensionValues;
use crate::sdp::{Codec, Direction};
use crate::sdp_api::{SdpAnswer, SdpOffer};
use crate::{Event, Rtc};

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";

/// Delivers everything `from` sends now to `to`; returns the RTP packets `from`
/// surfaced and the time of its next timeout.
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant, from_a: bool) -> (usize, Instant) {
    let (src, dst): (SocketAddr, SocketAddr) = if from_a {
        (A.parse().unwrap(), B.parse().unwrap())
    } else {
        (B.parse().unwrap(), A.parse().unwrap())
    };
    let mut events = 0;
    loop {
        let data = match from.poll_output().unwrap() {
            Output::Transmit(t) => t.contents.to_vec(),
            Output::Event(Event::RtpPacket(_)) => {
                events += 1;
                continue;
            }
            Output::Event(_) => continue,
            Output::Timeout(t) => return (events, t),
        };
        let r = Receive {
            proto: Protocol::Udp,
            source: src,
            destination: dst,
            contents: &data,
        };
        to.handle_input(Input::Receive(now, r)).unwrap();
    }
}

/// Two `Rtc` in RTP mode with one video section, connected in memory.
fn connected() -> (Rtc, Rtc, Mid, u8, Instant) {
    connected_with(true)
}

/// As [`connected`], `a` probing with RTX redundancy or padding only.
fn connected_with(redundancy: bool) -> (Rtc, Rtc, Mid, u8, Instant) {
    let mut now = Instant::now();
    let mut a = Rtc::builder()
        .set_rtp_mode(true)
        .set_pacing(true)
        .set_probe_redundancy(redundancy)
        .build(now)
        .unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(A.parse().unwrap(), Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(B.parse().unwrap(), Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().unwrap();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap())
        .unwrap();
    a.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap(),
        )
        .unwrap();
    for _ in 0..500 {
        if a.is_connected() && b.is_connected() {
            break;
        }
        now += Duration::from_millis(5);
        a.handle_input(Input::Timeout(now)).unwrap();
        b.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut a, &mut b, now, true);
        pump(&mut b, &mut a, now, false);
    }
    assert!(a.is_connected() && b.is_connected());
    let pt = a.media_info(mid).unwrap().pt_for(&Codec::Vp8).unwrap();
    (a, b, mid, pt, now)
}

fn write(a: &mut Rtc, mid: Mid, pt: u8, n: u64, now: Instant) {
    for i in 0..n {
        a.stream_tx(mid)
            .unwrap()
            .write_rtp(
                pt,
                i,
                0,
                now,
                false,
                &ExtensionValues::default(),
                &[7; 1100],
            )
            .unwrap();
    }
}

#[test]
fn rtp_waits_for_the_bucket_and_the_timeout_says_when() {
    let (mut a, mut b, mid, pt, mut now) = connected();
    // Below the estimate: no probe. Pacing at 2.5 × 200 kbit/s = 62.5 B/ms,
    // about 19 ms per 1100 B packet.
    a.set_send_rate(200_000, 0);
    write(&mut a, mid, pt, 10, now);
    let (_, mut t) = pump(&mut a, &mut b, now, true);
    let (got, _) = pump(&mut b, &mut a, now, false);
    assert!(got <= 2, "the bucket let {got} through at once");
    assert!(t > now && t <= now + Duration::from_millis(25), "{t:?}");
    // Following the timeouts, all arrive within about 10 × 19 ms.
    let start = now;
    let mut total = got;
    while total < 10 && now < start + Duration::from_secs(1) {
        now = t
            .max(now + Duration::from_millis(1))
            .min(now + Duration::from_millis(5));
        a.handle_input(Input::Timeout(now)).unwrap();
        b.handle_input(Input::Timeout(now)).unwrap();
        t = pump(&mut a, &mut b, now, true).1;
        total += pump(&mut b, &mut a, now, false).0;
    }
    assert_eq!(total, 10);
    let took = now - start;
    assert!(
        took >= Duration::from_millis(140) && took <= Duration::from_millis(220),
        "{took:?}"
    );
    assert!(a.pacer_stats().sent[2] >= 10);
}

#[test]
fn turning_pacing_off_sends_what_waits() {
    let (mut a, mut b, mid, pt, now) = connected();
    a.set_send_rate(200_000, 0);
    write(&mut a, mid, pt, 10, now);
    pump(&mut a, &mut b, now, true);
    let (first, _) = pump(&mut b, &mut a, now, false);
    assert!(first < 10);
    a.set_pacing(false);
    pump(&mut a, &mut b, now, true);
    assert_eq!(first + pump(&mut b, &mut a, now, false).0, 10);
}

#[test]
fn pacing_off_sends_at_once() {
    let (mut a, mut b, mid, pt, now) = connected();
    a.set_pacing(false);
    a.set_send_rate(200_000, 0);
    write(&mut a, mid, pt, 10, now);
    pump(&mut a, &mut b, now, true);
    assert_eq!(pump(&mut b, &mut a, now, false).0, 10);
    assert_eq!(a.pacer_stats().sent, [0; 4]);
}

/// Writes 10 packets, then runs a 5 Mbit/s probe for 300 ms; returns the RTP packets
/// `b` surfaced and the padding packets `a`'s pacer sent.
fn probe_after_media(redundancy: bool) -> (usize, u64) {
    let (mut a, mut b, mid, pt, mut now) = connected_with(redundancy);
    a.set_send_rate(1_000_000, 0);
    let mut got = 0;
    for i in 0..10u64 {
        a.stream_tx(mid)
            .unwrap()
            .write_rtp(pt, i, 0, now, true, &ExtensionValues::default(), &[7; 1100])
            .unwrap();
        now += Duration::from_millis(20);
        a.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut a, &mut b, now, true);
        got += pump(&mut b, &mut a, now, false).0;
    }
    a.request_probe(5_000_000);
    let end = now + Duration::from_millis(300);
    while now < end {
        now += Duration::from_millis(2);
        a.handle_input(Input::Timeout(now)).unwrap();
        b.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut a, &mut b, now, true);
        got += pump(&mut b, &mut a, now, false).0;
    }
    (got, a.pacer_stats().sent[3])
}

#[test]
fn padding_only_probes_reach_the_receiver_as_nothing() {
    // With redundancy, a probe re-sends recent packets as RTX, which an RTP-mode
    // receiver surfaces again (an SFU's subscriber would see duplicates).
    let (got, padding) = probe_after_media(true);
    assert!(padding > 0);
    assert!(got > 10, "RTX copies surface: {got}");
    // Padding only: the probe runs and the receiver sees each packet once.
    let (got, padding) = probe_after_media(false);
    assert!(padding > 0, "the probe sent padding");
    assert_eq!(got, 10);
}

/// Asks `a` to retransmit its packet `seq` (as an SFU answering a NACK from a packet
/// cache does: `DirectApi::write_rtx` with the packet as first sent).
fn resend(a: &mut Rtc, mid: Mid, pt: u8, seq: u16, now: Instant) -> RtxOutcome {
    let ssrc = a.tx_ssrc(mid).unwrap();
    let h = crate::rtp::RtpHeader {
        payload_type: pt,
        sequence_number: seq,
        ssrc,
        ..crate::rtp::RtpHeader::default()
    };
    let mut buf = [0u8; 1500];
    let n = h
        .write(crate::rtp::HeaderExtension::None, &mut buf)
        .unwrap();
    buf[n..n + 1100].fill(7);
    let mut api = a.direct_api();
    api.advance_time(now);
    api.write_rtx(ssrc, &buf[..n + 1100]).unwrap()
}

/// Lets `ms` milliseconds pass in 5 ms steps, delivering what `a` sends.
fn run_for(a: &mut Rtc, b: &mut Rtc, now: &mut Instant, ms: u64) {
    for _ in 0..ms / 5 {
        *now += Duration::from_millis(5);
        a.handle_input(Input::Timeout(*now)).unwrap();
        b.handle_input(Input::Timeout(*now)).unwrap();
        pump(a, b, *now, true);
        pump(b, a, *now, false);
    }
}

/// Retransmissions sent by `a`'s pacer.
fn rtx_sent(a: &Rtc) -> u64 {
    a.pacer_stats().sent[PacketClass::Retransmission as usize]
}

#[test]
fn the_first_retransmission_of_a_session_goes_out() {
    let (mut a, mut b, mid, pt, mut now) = connected_with(false);
    a.set_send_rate(300_000, 0);
    write(&mut a, mid, pt, 3, now);
    run_for(&mut a, &mut b, &mut now, 50);
    // The retransmission budget starts full, not empty.
    assert_eq!(resend(&mut a, mid, pt, 1, now), RtxOutcome::Queued);
    run_for(&mut a, &mut b, &mut now, 50);
    assert_eq!(rtx_sent(&a), 1);
}

#[test]
fn a_retransmission_refused_for_the_budget_is_not_taken_for_a_duplicate() {
    let (mut a, mut b, mid, pt, mut now) = connected_with(false);
    // Budget: a quarter of 1 Mbit/s over 500 ms, 15,625 bytes: fourteen 1,114-byte
    // retransmissions, not fifteen.
    a.set_send_rate(1_000_000, 0);
    write(&mut a, mid, pt, 16, now);
    run_for(&mut a, &mut b, &mut now, 100);
    // One retransmission, then time for the budget to be full again.
    assert_eq!(resend(&mut a, mid, pt, 15, now), RtxOutcome::Queued);
    run_for(&mut a, &mut b, &mut now, 600);
    let before = rtx_sent(&a);
    for seq in 0..15 {
        assert_eq!(
            resend(&mut a, mid, pt, seq, now) == RtxOutcome::Queued,
            seq < 14
        );
    }
    run_for(&mut a, &mut b, &mut now, 50);
    assert_eq!(rtx_sent(&a) - before, 14);
    // 50 ms later the budget holds another one (refilled at 31,250 B/s), and the
    // packet refused before was never sent: this is no duplicate within a round trip.
    assert_eq!(resend(&mut a, mid, pt, 14, now), RtxOutcome::Queued);
    run_for(&mut a, &mut b, &mut now, 50);
    assert_eq!(rtx_sent(&a) - before, 15);
    // The one that did go out 50 ms ago is not sent again within the round trip.
    assert_eq!(
        resend(&mut a, mid, pt, 14, now),
        RtxOutcome::Refused(RtxRefusal::Duplicate)
    );
    run_for(&mut a, &mut b, &mut now, 50);
    assert_eq!(rtx_sent(&a) - before, 15);
}

#[test]
fn a_video_backlog_does_not_make_a_repeated_request_a_duplicate() {
    let (mut a, mut b, mid, pt, mut now) = connected_with(false);
    // Pacing at 2.5 × 300 kbit/s: 50 packets of 1,100 bytes wait about 0.6 s.
    a.set_send_rate(300_000, 0);
    write(&mut a, mid, pt, 1, now);
    run_for(&mut a, &mut b, &mut now, 50);
    write(&mut a, mid, pt, 50, now);
    assert_eq!(resend(&mut a, mid, pt, 0, now), RtxOutcome::Queued);
    run_for(&mut a, &mut b, &mut now, 20);
    assert_eq!(
        rtx_sent(&a),
        1,
        "the retransmission goes ahead of the video"
    );
    // A round trip (100 ms before one is measured) later the video still waits; a
    // new request means the retransmission was lost, and it goes again.
    run_for(&mut a, &mut b, &mut now, 100);
    assert!(a.pacer_stats().sent[PacketClass::Video as usize] < 40);
    assert_eq!(resend(&mut a, mid, pt, 0, now), RtxOutcome::Queued);
    run_for(&mut a, &mut b, &mut now, 20);
    assert_eq!(rtx_sent(&a), 2);
}

/// Retransmissions `a` counts as sent in its send-stream statistics
/// (`MediaEgressStats::rtx_sent`).
fn rtx_counted(a: &Rtc) -> u64 {
    a.session.tx.iter().map(|t| t.rtx_sent).sum()
}

#[test]
fn a_retransmission_refused_by_the_budget_is_reported_and_not_counted_as_sent() {
    let (mut a, mut b, mid, pt, mut now) = connected_with(false);
    // Budget: a quarter of 1 Mbit/s over 500 ms, 15,625 bytes: fourteen 1,114-byte
    // retransmissions, not fifteen.
    a.set_send_rate(1_000_000, 0);
    write(&mut a, mid, pt, 15, now);
    run_for(&mut a, &mut b, &mut now, 100);
    for seq in 0..14 {
        assert_eq!(resend(&mut a, mid, pt, seq, now), RtxOutcome::Queued);
    }
    assert_eq!(
        resend(&mut a, mid, pt, 14, now),
        RtxOutcome::Refused(RtxRefusal::OverBudget)
    );
    let refused: u64 = a.session.tx.iter().map(|t| t.rtx_refused).sum();
    assert_eq!(refused, 1);
    run_for(&mut a, &mut b, &mut now, 50);
    assert_eq!(rtx_sent(&a), 14, "the pacer sent fourteen");
    assert_eq!(rtx_counted(&a), 14, "the stream counts what went out");
}
