//! RTP mode through two connected `Rtc` in memory: one packet written on A's send
//! stream (header + extensions + SRTP protect) and received by B (SRTP unprotect,
//! parse, extension lookup, reports bookkeeping, `Event::RtpPacket`). Baseline in the
//! same run: the SRTP protect+unprotect pair alone, so the ratio shows what the `Rtc`
//! adds around the crypto.

use std::hint::black_box;
use std::time::Duration;

use benches::pair::{A, B, addr, connected, pump, write};
use criterion::{Criterion, criterion_group, criterion_main};
use rtc_core::_internal::srtp::{SrtpContext, SrtpProfile};
use rtc_core::media::Mid;
use rtc_core::sdp::Codec;
use rtc_core::{Input, Rtc};

/// One write on A's send stream, delivered to B; `step` advances the clock by
/// that much first (0: the clock stands still).
fn write_and_receive(c: &mut Criterion, name: &str, pacing: bool, step: Duration) -> (Rtc, Mid) {
    let (mut a, mut b, mid, mut now) = connected(pacing);
    let (a_addr, b_addr) = (addr(A), addr(B));
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
            write(&mut a, mid, pt, seq, now, &payload);
            pump(&mut a, &mut b, a_addr, b_addr, now, &mut scratch);
            let n = pump(&mut b, &mut a, b_addr, a_addr, now, &mut scratch);
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
