//! Simulcast receive (RID/MID resolution of unsignalled SSRCs, RTX per layer), the
//! RTX receive path's robustness, header-extension values and sender reports, between
//! `Rtc`s negotiated by SDP.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{NetConfig, Pair, Peer};
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::sdp::{Codec, Direction};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rtc};

const A_ADDR: &str = "10.0.0.1:5000";
const B_ADDR: &str = "10.0.0.2:6000";

/// `a` offers one send-receive video section to `b` (both in RTP mode); returns the
/// connected pair, the video mid and the offer text (with `a`'s FID group).
fn fid_pair() -> (Pair, Mid, String) {
    let now = Instant::now();
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let video = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().unwrap();
    let offer_text = offer.to_sdp_string();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer_text).unwrap())
        .unwrap();
    a.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap(),
        )
        .unwrap();
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        7,
    );
    assert!(pair.run_until(Duration::from_secs(10), |p| p.both_connected()));
    (pair, video, offer_text)
}

/// The `(primary, rtx)` SSRCs of the first `a=ssrc-group:FID` line.
fn fid_group(sdp: &str) -> (u32, u32) {
    let line = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ssrc-group:FID "))
        .expect("an FID group in the offer");
    let mut it = line.split(' ').map(|s| s.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// A plain RTP packet (no extensions).
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        version: 2,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1500];
    let n = h.write(HeaderExtension::None, &mut buf).unwrap();
    buf[n..n + payload.len()].copy_from_slice(payload);
    buf.truncate(n + payload.len());
    buf
}

#[test]
fn rtx_packet_with_short_payload_is_dropped() {
    let (mut pair, video, offer) = fid_pair();
    let (primary, rtx_ssrc) = fid_group(&offer);
    let info = pair.b.rtc.media_info(video).unwrap();
    let vp8 = info.pt_for(&Codec::Vp8).unwrap();
    let rtx_pt = info.rtx.iter().find(|(p, _)| *p == vp8).unwrap().1;
    assert!(info.remote_rtx.contains(&(primary, rtx_ssrc)));
    // A primary packet first, so the RTX stream has somewhere to go.
    let p = rtp(vp8, 100, 9000, primary, &[1, 2, 3, 4]);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    // 13 and 12 bytes: RTX header plus a 1-byte / empty payload (no room for the OSN).
    for (seq, payload) in [(7u16, &[0xaa][..]), (8, &[][..])] {
        let p = rtp(rtx_pt, seq, 9000, rtx_ssrc, payload);
        assert!(p.len() <= 13);
        pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        pair.step();
    }
    // A valid RTX packet after them is still unwrapped to its primary.
    let mut payload = 101u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[5, 6, 7]);
    let p = rtp(rtx_pt, 9, 9000, rtx_ssrc, &payload);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    pair.run_until(Duration::from_millis(200), |_| false);
    let got: Vec<(u32, u64, Vec<u8>)> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            common::Ev::Rtp {
                ssrc,
                seq_no,
                payload,
            } => Some((*ssrc, *seq_no, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            (primary, 100, vec![1, 2, 3, 4]),
            (primary, 101, vec![5, 6, 7])
        ]
    );
    // The 1-byte one counts as a drop; the empty one is like a padding probe.
    assert!(pair.b.rtc.stats().dropped >= 1);
}
