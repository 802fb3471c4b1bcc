//! RTP mode through two connected `Rtc` in memory: one packet written on A's send
//! stream (header + extensions + SRTP protect) and received by B (SRTP unprotect,
//! parse, extension lookup, reports bookkeeping, `Event::RtpPacket`). Baseline in the
//! same run: the SRTP protect+unprotect pair alone, so the ratio shows what the `Rtc`
//! adds around the crypto.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rtc_core::_internal::srtp::{SrtpContext, SrtpProfile};
use rtc_core::ice::Candidate;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::ExtensionValues;
use rtc_core::sdp::{Codec, Direction};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Event, Input, Output, Protocol, Receive, Rtc};

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";

/// Drains `from`: its datagrams are delivered to `to`, its RTP events counted.
fn pump(
    from: &mut Rtc,
    to: &mut Rtc,
    to_addr: SocketAddr,
    from_addr: SocketAddr,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> usize {
    let mut events = 0;
    loop {
        let n = match from.poll_output().expect("poll") {
            Output::Transmit(t) => {
                scratch.clear();
                scratch.extend_from_slice(t.contents);
                scratch.len()
            }
            Output::Event(Event::RtpPacket(p)) => {
                black_box(p.payload());
                events += 1;
                continue;
            }
            Output::Event(_) => continue,
            Output::Timeout(_) => break,
        };
        let r = Receive {
            proto: Protocol::Udp,
            source: from_addr,
            destination: to_addr,
            contents: &scratch[..n],
        };
        to.handle_input(Input::Receive(now, r)).expect("receive");
    }
    events
}

fn connected(pacing: bool) -> (Rtc, Rtc, Mid, Instant) {
    let mut now = Instant::now();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut a = Rtc::builder()
        .set_rtp_mode(true)
        .set_stats_interval(None)
        .set_pacing(pacing)
        .build(now)
        .unwrap();
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .set_stats_interval(None)
        .build(now)
        .unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
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
    let mut scratch = Vec::new();
    for _ in 0..500 {
        if a.is_connected() && b.is_connected() {
            break;
        }
        now += Duration::from_millis(5);
        a.handle_input(Input::Timeout(now)).unwrap();
        b.handle_input(Input::Timeout(now)).unwrap();
        pump(&mut a, &mut b, b_addr, a_addr, now, &mut scratch);
        pump(&mut b, &mut a, a_addr, b_addr, now, &mut scratch);
    }
    assert!(
        a.is_connected() && b.is_connected(),
        "handshake did not finish"
    );
    (a, b, mid, now)
}

/// One write on A's send stream, delivered to B; `step` advances the clock by
/// that much first (0: the clock stands still).
fn write_and_receive(c: &mut Criterion, name: &str, pacing: bool, step: Duration) -> (Rtc, Mid) {
    let (mut a, mut b, mid, mut now) = connected(pacing);
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let pt = a.media_info(mid).unwrap().pt_for(&Codec::Vp8).unwrap();
    // Far above what is sent (1100 B per `step`): the bucket never holds a packet
    // back, so this measures the pacer's bookkeeping per packet.
    a.set_send_rate(1_000_000_000, 0);
    let payload = vec![0x5au8; 1100];
    let mut scratch = Vec::with_capacity(2048);
    let mut seq = 0u64;
    c.bench_function(name, |bch| {
        bch.iter(|| {
            seq += 1;
            if !step.is_zero() {
                now += step;
                a.handle_input(Input::Timeout(now)).unwrap();
            }
            a.stream_tx(mid)
                .unwrap()
                .write_rtp(
                    pt,
                    seq,
                    (seq * 3000) as u32,
                    now,
                    true,
                    &ExtensionValues::default(),
                    &payload,
                )
                .unwrap();
            pump(&mut a, &mut b, b_addr, a_addr, now, &mut scratch);
            let n = pump(&mut b, &mut a, a_addr, b_addr, now, &mut scratch);
            assert_eq!(n, 1);
        })
    });
    (a, mid)
}

fn bench(c: &mut Criterion) {
    // Pacing off: the unpaced send path (what this bench measured before pacing).
    let (a, _) = write_and_receive(c, "rtp_mode_write_and_receive_1100B", false, Duration::ZERO);
    // The same with the clock advancing 100 µs per packet (88 Mbit/s), pacing off
    // and on: the difference is the pacer's cost per packet.
    write_and_receive(
        c,
        "rtp_mode_write_and_receive_1100B_clocked_unpaced",
        false,
        Duration::from_micros(100),
    );
    write_and_receive(
        c,
        "rtp_mode_write_and_receive_1100B_clocked_paced",
        true,
        Duration::from_micros(100),
    );

    // Baseline: the crypto alone, with the profile the two Rtc negotiated.
    let profile = match a.srtp_profile().unwrap() {
        rtc_core::dtls::SrtpProfileId::Aes128CmSha1_80 => SrtpProfile::Aes128CmSha1_80,
        rtc_core::dtls::SrtpProfileId::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        rtc_core::dtls::SrtpProfileId::AeadAes256Gcm => SrtpProfile::AeadAes256Gcm,
    };
    let key = vec![7u8; profile.master_key_len()];
    let salt = vec![9u8; profile.master_salt_len()];
    let mut tx = SrtpContext::new(profile, &key, &salt).unwrap();
    let mut rx = SrtpContext::new(profile, &key, &salt).unwrap();
    let mut buf = vec![0u8; 1500];
    let mut s = 0u16;
    c.bench_function("baseline_srtp_protect_unprotect_1112B", |bch| {
        bch.iter(|| {
            s = s.wrapping_add(1);
            buf[0] = 0x80;
            buf[1] = 96;
            buf[2..4].copy_from_slice(&s.to_be_bytes());
            buf[8..12].copy_from_slice(&1234u32.to_be_bytes());
            let n = tx.protect_rtp(&mut buf, 1112).unwrap();
            black_box(rx.unprotect_rtp(&mut buf[..n]).unwrap());
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
