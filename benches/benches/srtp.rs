//! SRTP protect/unprotect of a 1200-byte RTP packet, per profile.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rtc_core::_internal::srtp::{SrtpContext, SrtpProfile};

const PACKET_LEN: usize = 1200;
const SSRC: u32 = 0x1234_5678;

fn rtp_packet(seq: u16) -> [u8; PACKET_LEN + SrtpProfile::MAX_RTP_OVERHEAD] {
    let mut buf = [0xa5u8; PACKET_LEN + SrtpProfile::MAX_RTP_OVERHEAD];
    buf[..12].copy_from_slice(&[0x80, 0x60, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0]);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
    buf
}

fn contexts(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
    let km: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let (tx, _) = SrtpContext::pair_from_keying_material(profile, &km, true).expect("keys");
    let (_, rx) = SrtpContext::pair_from_keying_material(profile, &km, false).expect("keys");
    (tx, rx)
}

fn bench_srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Bytes(PACKET_LEN as u64));
    for profile in SrtpProfile::ALL {
        let name = format!("{profile:?}");

        let (mut tx, _) = contexts(profile);
        let mut seq = 0u16;
        group.bench_function(format!("protect/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    rtp_packet(seq)
                },
                |buf| black_box(tx.protect_rtp(buf, PACKET_LEN).expect("protect")),
                BatchSize::SmallInput,
            )
        });

        let (mut tx, mut rx) = contexts(profile);
        let mut seq = 0u16;
        group.bench_function(format!("unprotect/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    seq = seq.wrapping_add(1);
                    let mut buf = rtp_packet(seq);
                    let n = tx.protect_rtp(&mut buf, PACKET_LEN).expect("protect");
                    (buf, n)
                },
                |(buf, n)| black_box(rx.unprotect_rtp(&mut buf[..*n]).expect("unprotect")),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_srtp);
criterion_main!(benches);
