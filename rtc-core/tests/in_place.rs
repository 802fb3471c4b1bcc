//! RTP written and protected in the caller's buffer
//! (`DirectApi::write_rtp_packet_in_place`): sent from there when it leaves at once,
//! queued in the `Rtc` otherwise, and either way received byte-exact and in order.

mod common;

use std::time::Duration;

use common::{Ev, NetConfig, Pair, connected_pair};
use rtc_core::direct::RtpWritten;
use rtc_core::media::Mid;
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::sdp::Codec;

/// Payload bytes of packet `seq`.
fn payload(seq: u16) -> Vec<u8> {
    (0..1000u16)
        .map(|k| (k.wrapping_mul(7).wrapping_add(seq) % 251) as u8)
        .collect()
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Sent,
    Queued,
}

/// Writes packet `seq` of A's video stream in place in a caller's buffer; a packet
/// sent in place goes on the simulated network as it is.
fn write(p: &mut Pair, video: Mid, seq: u16) -> Fate {
    let ssrc = p.a.rtc.tx_ssrc(video).expect("A sends video");
    let pt =
        p.a.rtc
            .media_info(video)
            .and_then(|m| m.pt_for(&Codec::Vp8))
            .expect("VP8 negotiated");
    let h = RtpHeader {
        payload_type: pt,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        ssrc,
        marker: true,
        ..RtpHeader::default()
    };
    let body = payload(seq);
    let mut slot = vec![0u8; 2048];
    let now = p.now;
    let mut api = p.a.rtc.direct_api();
    api.advance_time(now);
    let written = api
        .write_rtp_packet_in_place(&mut slot, |buf| {
            let n = h.write(HeaderExtension::None, buf).ok()?;
            buf.get_mut(n..n + body.len())?.copy_from_slice(&body);
            Some(n + body.len())
        })
        .expect("write");
    match written {
        RtpWritten::Sent(t) => {
            // Protected: as long as the plaintext plus the SRTP tag.
            assert_eq!(t.contents.len(), 12 + body.len() + 16);
            let (proto, source, destination) = (t.proto, t.source, t.destination);
            let data = t.contents.to_vec();
            p.send_datagram(true, proto, source, destination, data);
            Fate::Sent
        }
        RtpWritten::Queued => Fate::Queued,
        RtpWritten::Nothing => panic!("the packet fits"),
    }
}

/// The video payloads B received, in order, with their sequence numbers.
fn received(p: &Pair) -> Vec<(u16, Vec<u8>)> {
    p.b.events
        .iter()
        .filter_map(|e| match e {
            Ev::Rtp {
                seq_no, payload, ..
            } => Some((*seq_no as u16, payload.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn unpaced_packets_are_sent_from_the_callers_buffer_and_arrive_intact() {
    let (mut p, _audio, video) = connected_pair(true, NetConfig::default());
    p.a.rtc.set_pacing(false);
    p.a.rtc.stream_tx(video).expect("A may send video");
    let before = p.a.rtc.stats().datagrams_out;
    let fates: Vec<Fate> = (1..=40u16).map(|seq| write(&mut p, video, seq)).collect();
    assert!(fates.iter().all(|f| *f == Fate::Sent), "{fates:?}");
    // Counted as sent without passing through `poll_output`.
    assert!(p.a.rtc.stats().datagrams_out >= before + 40);
    assert!(p.run_until(Duration::from_secs(1), |p| received(p).len() == 40));
    let got = received(&p);
    for (i, (seq, body)) in got.iter().enumerate() {
        let want = u16::try_from(i + 1).expect("40 packets");
        assert_eq!(*seq, want);
        assert_eq!(*body, payload(want));
    }
}

#[test]
fn paced_packets_queue_behind_each_other_and_keep_their_order() {
    let (mut p, _audio, video) = connected_pair(true, NetConfig::default());
    p.a.rtc.set_pacing(true);
    p.a.rtc.stream_tx(video).expect("A may send video");
    // A target to pace to: 400 kbit/s, 1 Mbit/s pacing rate with the default
    // multiplier. Let the probe the new target asks for run out first.
    p.a.rtc.set_send_rate(400_000, 0);
    p.run_until(Duration::from_secs(2), |_| false);
    let mut fates = Vec::new();
    let mut seq = 0u16;
    // Bursts of 10 packets of ~1 KB every 100 ms: 800 kbit/s in bursts, so the
    // pacer's bucket runs dry inside each burst and refills between them.
    for _ in 0..10 {
        for _ in 0..10 {
            seq += 1;
            fates.push(write(&mut p, video, seq));
        }
        p.run_until(Duration::from_millis(100), |_| false);
    }
    assert!(p.run_until(Duration::from_secs(2), |p| received(p).len() == 100));
    let sent = fates.iter().filter(|f| **f == Fate::Sent).count();
    let queued = fates.len() - sent;
    assert!(
        sent >= 10,
        "the first packet of each burst leaves at once: {fates:?}"
    );
    assert!(queued >= 10, "the pacer held part of each burst: {fates:?}");
    // Once one packet of a burst is queued, the rest of the burst queues behind
    // it (none overtakes).
    for burst in fates.chunks(10) {
        if let Some(first) = burst.iter().position(|f| *f == Fate::Queued) {
            assert!(
                burst[first..].iter().all(|f| *f == Fate::Queued),
                "{burst:?}"
            );
        }
    }
    let got = received(&p);
    let seqs: Vec<u16> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<u16>>());
    assert!(got.iter().all(|(s, body)| *body == payload(*s)));
}
