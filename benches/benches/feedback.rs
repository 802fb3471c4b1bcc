//! Feedback units: TWCC receive register (100 arrivals + feedback write) and the
//! RTX send buffer (store + get).

use criterion::{Criterion, criterion_group, criterion_main};
use rtc_core::_internal::feedback::{RtxParams, RtxSendBuffer, TwccRecvRegister};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn twcc_recv(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut reg = TwccRecvRegister::new(1, 2);
    let mut out = [0u8; 1500];
    let mut seq = 0u16;
    let mut t = t0;
    c.bench_function("twcc_recv_100_packets_and_feedback", |b| {
        b.iter(|| {
            for i in 0..100u16 {
                // Every 17th packet lost, 1 ms spacing.
                if i % 17 != 16 {
                    reg.on_packet(t, seq);
                }
                seq = seq.wrapping_add(1);
                t += Duration::from_millis(1);
            }
            let mut total = 0;
            while let Some(n) = reg.poll_feedback(t, &mut out) {
                total += n;
            }
            black_box(total);
        })
    });
}

fn rtx_buffer(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut buf = RtxSendBuffer::default();
    let mut pkt = [0u8; 1200];
    pkt[0] = 0x80;
    pkt[1] = 96;
    let mut seq = 0u64;
    c.bench_function("rtx_store_get_1200", |b| {
        b.iter(|| {
            pkt[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
            buf.store(t0, seq, black_box(&pkt));
            let got = buf.get(t0, seq.saturating_sub(100)).map(<[u8]>::len);
            seq += 1;
            black_box(got);
        })
    });
    let mut out = [0u8; 1500];
    let rtx = RtxParams {
        ssrc: 5,
        payload_type: 97,
        seq: 1,
    };
    c.bench_function("rtx_build_1200", |b| {
        b.iter(|| black_box(buf.build_rtx(t0, seq - 1, rtx, &mut out)))
    });
}

criterion_group!(benches, twcc_recv, rtx_buffer);
criterion_main!(benches);
