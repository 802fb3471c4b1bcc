//! `Rtc::account_rtp_unverified`: packets booked from their clear header keep the
//! receive state (sequence extension, loss register, NACK) as exact as full
//! verification would.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ev, NetConfig, Pair, Peer};
use rtc_core::ice::Candidate;
use rtc_core::io::Protocol;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{HeaderExtension, RtpHeader};
use rtc_core::{Input, Output, Receive, Rtc};

const SSRC: u32 = 4321;

fn connected() -> Pair {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_stats_interval(Some(Duration::from_millis(500)))
        .build(now)
        .unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    a.add_remote_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    b.add_remote_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    let (ca, fa) = (
        a.direct_api().local_ice_credentials(),
        a.direct_api().local_dtls_fingerprint(),
    );
    let (cb, fb) = (
        b.direct_api().local_ice_credentials(),
        b.direct_api().local_dtls_fingerprint(),
    );
    {
        let mut da = a.direct_api();
        da.set_remote_ice_credentials(cb);
        da.set_remote_fingerprint(fb);
        da.set_ice_controlling(true);
        da.start_dtls(true).unwrap();
    }
    {
        let mut db = b.direct_api();
        db.set_remote_ice_credentials(ca);
        db.set_remote_fingerprint(fa);
        db.set_ice_controlling(false);
        db.start_dtls(false).unwrap();
    }
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        7,
    );
    assert!(pair.run_until(Duration::from_secs(5), |p| p.both_connected()));
    let mid = Mid::new("0").unwrap();
    pair.b.rtc.direct_api().declare_media(mid, MediaKind::Video);
    pair.b.rtc.direct_api().expect_stream_rx(mid, SSRC).unwrap();
    pair
}

fn rtp(seq: u16) -> Vec<u8> {
    let h = RtpHeader {
        version: 2,
        payload_type: 96,
        sequence_number: seq,
        timestamp: 90 * u32::from(seq),
        ssrc: SSRC,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1500];
    let n = h.write(HeaderExtension::None, &mut buf).unwrap();
    buf[n..n + 200].fill(seq as u8);
    buf.truncate(n + 200);
    buf
}

/// The SRTP datagram `a` sends for RTP packet `seq`.
fn protected(pair: &mut Pair, seq: u16) -> Vec<u8> {
    pair.a.rtc.direct_api().write_rtp_packet(&rtp(seq)).unwrap();
    let mut out = None;
    loop {
        match pair.a.rtc.poll_output().unwrap() {
            Output::Transmit(t) if out.is_none() && t.contents.len() > 200 => {
                out = Some(t.contents.to_vec());
            }
            Output::Timeout(t) => {
                pair.a.timeout = t;
                break;
            }
            _ => {}
        }
    }
    out.expect("a sent the packet")
}

#[test]
fn unverified_packets_keep_sequence_and_loss_exact() {
    let mut pair = connected();
    let (a_addr, b_addr) = (pair.a.addr, pair.b.addr);
    let mut unverified = 0;
    // 200 packets across the 16-bit wrap; #120 is lost; one in 8 verified (and the
    // first, which binds the SSRC).
    for i in 0..200u16 {
        let seq = 65_450u16.wrapping_add(i);
        let d = protected(&mut pair, seq);
        if i == 120 {
            continue;
        }
        pair.now += Duration::from_millis(1);
        let r = Receive {
            proto: Protocol::Udp,
            source: a_addr,
            destination: b_addr,
            contents: &d,
        };
        let now = pair.now;
        if i % 8 != 0 {
            let u = pair
                .b
                .rtc
                .account_rtp_unverified(now, &r)
                .expect("a bound stream's packet is booked");
            assert_eq!((u.ssrc, u.payload_type, u.len), (SSRC, 96, d.len()));
            assert_eq!(u.seq_no, 65_450 + u64::from(i), "extended across the wrap");
            unverified += 1;
        } else {
            pair.b.rtc.handle_input(Input::Receive(now, r)).unwrap();
        }
    }
    // Run on: reports, NACKs and stats flow.
    pair.run_until(Duration::from_secs(2), |_| false);
    let verified: Vec<u64> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            Ev::Rtp { seq_no, .. } => Some(*seq_no),
            _ => None,
        })
        .collect();
    assert_eq!(verified.len(), 24, "{verified:?}");
    assert_eq!(unverified, 175);
    assert!(
        verified.iter().all(|s| (s - 65_450) % 8 == 0),
        "{verified:?}"
    );
    // The stats see every packet and exactly one loss: the unverified ones filled
    // the register (else 175 would count as lost and be NACKed).
    let stats = pair
        .b
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Ev::Other(s) if s.contains("IngressStats") && s.contains(&format!("ssrc: {SSRC}")) => {
                Some(s.clone())
            }
            _ => None,
        })
        .expect("ingress stats");
    assert!(stats.contains("packets: 199,"), "{stats}");
    assert!(stats.contains("lost: 1,"), "{stats}");
}

fn recv(contents: &[u8], source: SocketAddr, destination: SocketAddr) -> Receive<'_> {
    Receive {
        proto: Protocol::Udp,
        source,
        destination,
        contents,
    }
}

#[test]
fn unverified_refuses_what_needs_full_processing() {
    let mut pair = connected();
    let (a, b) = (pair.a.addr, pair.b.addr);
    let now = pair.now;
    // The first packet binds the SSRC through full processing.
    let first = protected(&mut pair, 1);
    pair.b
        .rtc
        .handle_input(Input::Receive(now, recv(&first, a, b)))
        .unwrap();
    let d = protected(&mut pair, 2);
    let rtc = &mut pair.b.rtc;
    let unknown: SocketAddr = "10.9.9.9:1".parse().unwrap();
    assert!(
        rtc.account_rtp_unverified(now, &recv(&d, unknown, b))
            .is_none()
    );
    let mut rtcp = d.clone();
    rtcp[1] = 200;
    assert!(
        rtc.account_rtp_unverified(now, &recv(&rtcp, a, b))
            .is_none()
    );
    let mut other = d.clone();
    other[8..12].copy_from_slice(&99u32.to_be_bytes());
    assert!(
        rtc.account_rtp_unverified(now, &recv(&other, a, b))
            .is_none(),
        "an SSRC no verified packet bound"
    );
    assert!(
        rtc.account_rtp_unverified(now, &recv(&d[..8], a, b))
            .is_none()
    );
    let earlier = now - Duration::from_millis(1);
    assert!(
        rtc.account_rtp_unverified(earlier, &recv(&d, a, b))
            .is_none()
    );
    let u = rtc
        .account_rtp_unverified(now, &recv(&d, a, b))
        .expect("a bound SSRC from the validated address");
    assert_eq!(u.seq_no, 2);
}
