//! Packetize and depacketize a 30 kB VP8 frame at MTU 1200.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtc_core::_internal::packet::{
    Codec, CodecDepacketizer, CodecExtra, CodecPacketizer, DepackConfig, Depacketizer,
    DepacketizingBuffer, PacketMeta, Packetizer,
};
use std::hint::black_box;

const MTU: usize = 1200;

fn frame() -> Vec<u8> {
    let mut f: Vec<u8> = (0..30_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    f[0] = 0x00; // keyframe
    f
}

fn bench(c: &mut Criterion) {
    let f = frame();
    let mut g = c.benchmark_group("vp8_30kB_mtu1200");
    g.throughput(Throughput::Bytes(f.len() as u64));

    g.bench_function("packetize", |b| {
        let mut pk = CodecPacketizer::new(&Codec::Vp8).expect("VP8 packetizes");
        let mut out = Vec::with_capacity(32);
        b.iter(|| {
            out.clear();
            pk.packetize(MTU, black_box(&f), &mut out).expect("fits");
            black_box(out.len())
        })
    });

    let mut payloads = Vec::new();
    CodecPacketizer::new(&Codec::Vp8)
        .expect("VP8 packetizes")
        .packetize(MTU, &f, &mut payloads)
        .expect("fits");

    g.bench_function("depacketize", |b| {
        let mut dp = CodecDepacketizer::new(&Codec::Vp8).expect("VP8 depacketizes");
        let mut out = Vec::with_capacity(f.len());
        b.iter(|| {
            out.clear();
            let mut extra = CodecExtra::None;
            for p in &payloads {
                dp.depacketize(black_box(p), &mut out, &mut extra)
                    .expect("valid");
            }
            dp.finish(&mut out).expect("valid");
            black_box(out.len())
        })
    });

    g.bench_function("buffer_push_pop", |b| {
        let mut buf: DepacketizingBuffer<u64> = DepacketizingBuffer::new(
            CodecDepacketizer::new(&Codec::Vp8).expect("VP8 depacketizes"),
            DepackConfig::default(),
        );
        let mut seq = 0u64;
        let mut time = 0u64;
        b.iter(|| {
            let n = payloads.len();
            for (i, p) in payloads.iter().enumerate() {
                let meta = PacketMeta {
                    seq,
                    time,
                    marker: i + 1 == n,
                    received: seq,
                };
                buf.push(meta, p);
                seq += 1;
            }
            time += 3000;
            let frame = buf.pop().expect("complete").expect("valid");
            black_box(frame.data.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
