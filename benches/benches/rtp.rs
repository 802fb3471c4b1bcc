//! RTP header parse (with three header extensions) and TWCC feedback write.

use criterion::{Criterion, criterion_group, criterion_main};
use rtc_core::_internal::rtcp::TwccBuilder;
use rtc_core::rtp::{ExtensionMap, ExtensionValues, HeaderExtension, RtpHeader, RtpPacket};
use std::hint::black_box;

fn rtp_parse(c: &mut Criterion) {
    let map = ExtensionMap::default();
    let values = ExtensionValues {
        transport_cc: Some(1234),
        abs_send_time: Some(0x12_3456),
        mid: Some("0"),
        ..ExtensionValues::default()
    };
    let header = RtpHeader {
        marker: true,
        payload_type: 96,
        sequence_number: 4321,
        timestamp: 90_000,
        ssrc: 0x1234_5678,
        ..RtpHeader::default()
    };
    let mut pkt = [0u8; 1200];
    let n = header
        .write(
            HeaderExtension::Values {
                map: &map,
                values: &values,
            },
            &mut pkt,
        )
        .expect("1200 bytes hold the header"); // bench setup
    let pkt = &pkt[..n + 1000];
    c.bench_function("rtp_parse_3_extensions", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(pkt)).expect("valid packet"); // bench input
            let v = p.extensions(&map).expect("valid extensions"); // bench input
            black_box((p.header.sequence_number, v.transport_cc, v.mid));
        })
    });
}

fn twcc_write(c: &mut Criterion) {
    let mut buf = [0u8; 1500];
    c.bench_function("twcc_feedback_write_100", |b| {
        let mut builder = TwccBuilder::new(1, 2);
        let mut seq = 0u16;
        let mut t = 1_000_000u64;
        b.iter(|| {
            for i in 0..100u16 {
                // Every 10th packet lost, jittery arrivals.
                if i % 10 != 3 {
                    builder.record(seq, t + u64::from(i % 7) * 300);
                }
                seq = seq.wrapping_add(1);
                t += 1_000;
            }
            while let Some(n) = builder.write(&mut buf).expect("1500 bytes suffice") {
                // bench input
                black_box(n);
            }
        })
    });
}

criterion_group!(benches, rtp_parse, twcc_write);
criterion_main!(benches);
