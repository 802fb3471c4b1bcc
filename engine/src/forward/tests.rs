use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn packet(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: &[u8],
    ext: bool,
) -> Vec<u8> {
    let h = RtpHeader {
        marker,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..RtpHeader::default()
    };
    let mut buf = vec![0u8; 1500];
    let n = if ext {
        h.write(
            HeaderExtension::Raw {
                profile: 0xBEDE,
                data: &[0x10, 0xaa, 0, 0],
            },
            &mut buf,
        )
        .unwrap()
    } else {
        h.write(HeaderExtension::None, &mut buf).unwrap()
    };
    buf[n..n + payload.len()].copy_from_slice(payload);
    buf.truncate(n + payload.len());
    buf
}

fn leg(pt_map: PtMap, mid_ext_id: Option<u8>) -> LegParams {
    LegParams::new(0xabcd_0001, Mid::new("v1").unwrap(), pt_map, mid_ext_id)
}

fn pd(pt: u8, codec: Codec, clock_rate: u32) -> PayloadDesc {
    PayloadDesc {
        pt,
        codec,
        clock_rate,
    }
}

#[test]
fn pt_map_by_codec() {
    let publisher = [
        pd(96, Codec::Vp8, 90_000),
        pd(97, Codec::Rtx, 90_000),
        pd(102, Codec::H264, 90_000),
    ];
    let subscriber = [pd(100, Codec::H264, 90_000), pd(120, Codec::Vp8, 90_000)];
    let m = PtMap::from_payloads(MediaKind::Video, &publisher, &subscriber);
    assert_eq!(m.get(96), Some(120));
    assert_eq!(m.get(102), Some(100));
    assert_eq!(m.get(97), None, "RTX is not forwarded");
    assert_eq!(m.get(111), None);
    assert_eq!(m.get(200), None);
    assert_eq!(repair_pts(&publisher), 1u128 << 97);
    let id = PtMap::from_payloads(MediaKind::Audio, &[], &subscriber);
    assert_eq!(id.get(111), Some(111));
    assert_eq!(id.clock_rate(111), 48_000);
}

/// Clock rates are kept per publisher payload type through a small table: each of up
/// to eight distinct rates is told apart, a ninth keeps the kind's default.
#[test]
fn pt_map_keeps_each_payload_types_clock_rate() {
    let rates = [
        8_000u32, 16_000, 32_000, 24_000, 12_000, 44_100, 96_000, 22_050,
    ];
    let publisher: Vec<PayloadDesc> = rates
        .iter()
        .enumerate()
        .map(|(i, &r)| pd(100 + i as u8, Codec::Opus, r))
        .chain([pd(111, Codec::Opus, 48_000)])
        .collect();
    let subscriber = [pd(111, Codec::Opus, 48_000)];
    let m = PtMap::from_payloads(MediaKind::Audio, &publisher, &subscriber);
    assert_eq!(m.clock_rate(111), 48_000);
    for (i, &r) in rates.iter().enumerate().take(7) {
        assert_eq!(m.clock_rate(100 + i as u8), r, "pt {}", 100 + i);
    }
    // 48 kHz (the default) and seven others fill the table: the eighth other rate
    // falls back to the default.
    assert_eq!(m.clock_rate(107), 48_000);
    assert_eq!(
        m.clock_rate(127),
        48_000,
        "unnamed payload type: the default"
    );
    assert!(std::mem::size_of::<PtMap>() <= 300);
}

#[test]
fn rewrites_header_and_keeps_payload() {
    let now = Instant::now();
    let src = packet(96, 1000, 5000, 0x1111, true, b"hello payload", true);
    let publisher = [pd(96, Codec::Vp8, 90_000)];
    let subscriber = [pd(98, Codec::Vp8, 90_000)];
    let l = leg(
        PtMap::from_payloads(MediaKind::Video, &publisher, &subscriber),
        Some(4),
    );
    let mut rw = SeqTsRewriter::default();
    let mut out = [0u8; 1500];
    let n = rewrite_for_leg(&src, 7, &l, &mut rw, now, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(p.header.ssrc, 0xabcd_0001);
    assert_eq!(p.header.payload_type, 98);
    assert_eq!(p.header.sequence_number, 1000);
    assert_eq!(p.header.timestamp, 5000);
    assert!(p.header.marker);
    assert_eq!(p.payload, b"hello payload");
    let mut map = ExtensionMap::empty();
    map.set(4, Extension::Mid);
    assert_eq!(p.extensions(&map).unwrap().mid, Some("v1"));
    // Without a mid extension id no extension block is written.
    let l2 = leg(PtMap::identity(MediaKind::Video), None);
    let n = rewrite_for_leg(&src, 7, &l2, &mut SeqTsRewriter::default(), now, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert!(!p.header.extension);
    assert_eq!(p.header.payload_type, 96);
    assert_eq!(n, 12 + 13);
}

#[test]
fn keeps_padding() {
    let mut src = packet(96, 1, 2, 3, false, &[9, 9, 9, 0, 0, 4], false);
    src[0] |= 0x20;
    let l = leg(PtMap::identity(MediaKind::Video), None);
    let mut out = [0u8; 100];
    let n = rewrite_for_leg(
        &src,
        1,
        &l,
        &mut SeqTsRewriter::default(),
        Instant::now(),
        &mut out,
    )
    .unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(p.padding_len, 4);
    assert_eq!(p.payload, &[9, 9]);
}

#[test]
fn errors() {
    let l = leg(
        PtMap::from_payloads(
            MediaKind::Video,
            &[pd(96, Codec::Vp8, 90_000)],
            &[pd(98, Codec::Vp9, 90_000)],
        ),
        None,
    );
    let mut rw = SeqTsRewriter::default();
    let now = Instant::now();
    let mut out = [0u8; 64];
    let src = packet(96, 1, 2, 3, false, &[1; 10], false);
    assert_eq!(
        rewrite_for_leg(&src, 1, &l, &mut rw, now, &mut out),
        Err(RewriteError::Unmapped)
    );
    assert_eq!(
        rewrite_for_leg(&[0x80, 1, 2], 1, &l, &mut rw, now, &mut out),
        Err(RewriteError::Malformed)
    );
    let big = packet(96, 1, 2, 3, false, &[1; 100], false);
    let id = leg(PtMap::identity(MediaKind::Video), None);
    assert_eq!(
        rewrite_for_leg(&big, 1, &id, &mut rw, now, &mut out),
        Err(RewriteError::BufferTooSmall)
    );
}

#[test]
fn continuous_across_source_switch() {
    let t0 = Instant::now();
    let mut rw = SeqTsRewriter::default();
    // Source A: seq 65530.., ts 1000 + 3000 per packet.
    let mut last = (0, 0);
    for i in 0..10u16 {
        last = rw.rewrite(
            (1, 0xA),
            65_530u16.wrapping_add(i),
            1000 + 3000 * u32::from(i),
            90_000,
            t0,
        );
    }
    assert_eq!(last, (65_530u16.wrapping_add(9), 1000 + 27_000));
    // 100 ms later, source B starts at unrelated numbers.
    let t1 = t0 + Duration::from_millis(100);
    let first_b = rw.rewrite((2, 0xB), 17, 777_777, 90_000, t1);
    assert_eq!(first_b.0, last.0.wrapping_add(1));
    assert_eq!(first_b.1, last.1 + 9000);
    let second_b = rw.rewrite((2, 0xB), 18, 777_777 + 3000, 90_000, t1);
    assert_eq!(second_b, (first_b.0.wrapping_add(1), first_b.1 + 3000));
    // Reordered packet of B keeps its relative position.
    let reordered = rw.rewrite((2, 0xB), 16, 777_777 - 3000, 90_000, t1);
    assert_eq!(reordered, (first_b.0.wrapping_sub(1), first_b.1 - 3000));
    // Same publisher, new SSRC (stream restart) is a switch too.
    let c = rw.rewrite((2, 0xC), 5000, 1, 90_000, t1);
    assert_eq!(c.0, second_b.0.wrapping_add(1));
    assert_eq!(c.1, second_b.1 + 1, "at least one tick");
}

#[test]
fn write_forwarded_numbers_vp8_and_forwards_extensions() {
    // VP8: X, S; I with a 15-bit PictureID 0x1234; L with TL0PICIDX 9; a keyframe.
    let payload = [0x90, 0xC0, 0x92, 0x34, 9, 0x00, 0xAB, 0xCD];
    let src = packet(96, 10, 20, 30, true, &payload, true);
    let desc = crate::sfu::codec::parse_vp8(&payload).unwrap();
    let mut sub = ExtensionMap::empty();
    sub.set(3, Extension::Mid);
    sub.set(5, Extension::AudioLevel);
    let l = leg(PtMap::identity(MediaKind::Video), Some(3)).with_forwarded_extensions(&sub);
    let fwd = FwdExt {
        audio_level: Some(AudioLevel {
            voice: true,
            level: 33,
        }),
        ..FwdExt::default()
    };
    let rw = Vp8Rewrite {
        picture_id: Some(0x0101),
        tl0picidx: Some(200),
    };
    let mut out = [0u8; 200];
    let n = write_forwarded(&src, &l, 777, 888, Some((&desc, rw)), &fwd, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!((p.header.sequence_number, p.header.timestamp), (777, 888));
    assert_eq!(p.payload, &[0x90, 0xC0, 0x81, 0x01, 200, 0x00, 0xAB, 0xCD]);
    let v = p.extensions(&sub).unwrap();
    assert_eq!(v.mid, Some("v1"));
    assert_eq!(v.audio_level, fwd.audio_level);
    // Not negotiated by the subscriber: not written.
    let plain = leg(PtMap::identity(MediaKind::Video), None)
        .with_forwarded_extensions(&ExtensionMap::empty());
    let n = write_forwarded(&src, &plain, 1, 2, None, &fwd, &mut out).unwrap();
    assert_eq!(n, 12 + payload.len());
    assert_eq!(&out[12..n], &payload);
}

#[test]
fn dependency_descriptor_is_forwarded_opaquely_with_the_subscribers_id() {
    // The publisher sends a 20-byte descriptor (longer than the one-byte form allows)
    // under its id 7; the subscriber negotiated id 12.
    let dd: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37)).collect();
    let mut pub_map = ExtensionMap::empty();
    pub_map.set(7, Extension::DependencyDescriptor);
    let h = RtpHeader {
        payload_type: 45,
        sequence_number: 3,
        timestamp: 4,
        ssrc: 5,
        ..RtpHeader::default()
    };
    let values = ExtensionValues {
        dependency_descriptor: Some(&dd),
        ..ExtensionValues::default()
    };
    let mut src = vec![0u8; 200];
    let n = h
        .write(
            HeaderExtension::Values {
                map: &pub_map,
                values: &values,
            },
            &mut src,
        )
        .unwrap();
    src.truncate(n);
    src.extend_from_slice(&[1, 2, 3, 4]);
    let parsed = RtpPacket::parse(&src).unwrap();
    let fwd = FwdExt::from_values(&parsed.extensions(&pub_map).unwrap(), &src);
    let range = fwd.dependency_descriptor.expect("recorded");
    assert_eq!(range.get(&src), Some(&dd[..]));

    let mut sub = ExtensionMap::empty();
    sub.set(12, Extension::DependencyDescriptor);
    let l = leg(PtMap::identity(MediaKind::Video), None).with_forwarded_extensions(&sub);
    let mut out = [0u8; 200];
    let n = write_forwarded(&src, &l, 9, 10, None, &fwd, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!(p.payload, &[1, 2, 3, 4]);
    assert_eq!(
        p.extensions(&sub).unwrap().dependency_descriptor,
        Some(&dd[..])
    );
    // Not under the publisher's id.
    assert_eq!(p.extensions(&pub_map).unwrap().dependency_descriptor, None);
    // A value that is not inside the packet has no range.
    let other = [1u8, 2];
    assert_eq!(ExtRange::within(&src, &other), None);
    assert_eq!(ExtRange::within(&src, &src[src.len()..]), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rewrite_round_trips(pt in 0u8..128, seq: u16, ts: u32, ssrc: u32, marker: bool,
                           payload in proptest::collection::vec(any::<u8>(), 0..1200),
                           ext: bool, mid_ext in proptest::option::of(1u8..15)) {
        let src = packet(pt, seq, ts, ssrc, marker, &payload, ext);
        let l = leg(PtMap::identity(MediaKind::Video), mid_ext);
        let mut rw = SeqTsRewriter::default();
        let mut out = [0u8; 1500];
        let n = rewrite_for_leg(&src, 9, &l, &mut rw, Instant::now(), &mut out).unwrap();
        let p = RtpPacket::parse(&out[..n]).unwrap();
        prop_assert_eq!(p.header.payload_type, pt);
        prop_assert_eq!(p.header.sequence_number, seq);
        prop_assert_eq!(p.header.timestamp, ts);
        prop_assert_eq!(p.header.ssrc, l.ssrc);
        prop_assert_eq!(p.header.marker, marker);
        prop_assert_eq!(p.payload, &payload[..]);
    }

    #[test]
    fn rewrite_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let l = leg(PtMap::identity(MediaKind::Video), Some(3));
        let mut out = [0u8; 256];
        let _ = rewrite_for_leg(&data, 1, &l, &mut SeqTsRewriter::default(), Instant::now(), &mut out);
    }
}

/// A RED payload: `old` (offset 960) then `new` as primary, both of type `pt`.
fn red_payload(pt: u8, old: &[u8], new: &[u8]) -> Vec<u8> {
    use rtc_core::rtp::red::{RedBlock, write_red};
    let mut out = vec![0u8; 1500];
    let b = |data, timestamp_offset| RedBlock {
        payload_type: pt,
        timestamp_offset,
        data,
    };
    let n = write_red(&b(new, 0), &[b(old, 960)], &mut out).unwrap();
    out.truncate(n);
    out
}

#[test]
fn red_is_forwarded_with_block_types_renumbered_or_reduced_to_its_primary() {
    use rtc_core::rtp::red::RedPayload;
    let publisher = [pd(63, Codec::Red, 48_000), pd(111, Codec::Opus, 48_000)];
    let with_red = [pd(100, Codec::Red, 48_000), pd(109, Codec::Opus, 48_000)];
    let without = [pd(109, Codec::Opus, 48_000)];
    let mut src = packet(
        63,
        7,
        9600,
        1,
        true,
        &red_payload(111, b"old", b"newer"),
        true,
    );
    src[0] |= 0x20; // padding: kept when forwarding RED, dropped with the reduction
    src.extend_from_slice(&[0, 0, 3]);
    let fwd = FwdExt::default();
    let mut out = [0u8; 1500];

    let m = PtMap::from_payloads(MediaKind::Audio, &publisher, &with_red);
    assert_eq!(
        (m.get(63), m.red(63), m.red(111)),
        (Some(100), Some(false), None)
    );
    assert_eq!(repair_pts(&publisher), 0, "RED carries media");
    let n = write_forwarded(&src, &leg(m, None), 8, 9700, None, &fwd, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!((p.header.payload_type, p.padding_len), (100, 3));
    let r = RedPayload::parse(p.payload).unwrap();
    assert_eq!(
        (r.primary.payload_type, r.primary.data),
        (109, &b"newer"[..])
    );
    let old = r.redundant().next().unwrap();
    assert_eq!(
        (old.payload_type, old.timestamp_offset, old.data),
        (109, 960, &b"old"[..])
    );

    let m = PtMap::from_payloads(MediaKind::Audio, &publisher, &without);
    assert_eq!((m.get(63), m.red(63)), (Some(109), Some(true)));
    let n = write_forwarded(&src, &leg(m.clone(), None), 8, 9700, None, &fwd, &mut out).unwrap();
    let p = RtpPacket::parse(&out[..n]).unwrap();
    assert_eq!((p.header.payload_type, p.header.timestamp), (109, 9700));
    assert!(p.header.marker);
    assert_eq!((p.payload, p.padding_len), (&b"newer"[..], 0));

    // Malformed RED is not forwarded in either mode.
    let bad = packet(63, 7, 9600, 1, false, &[0x80 | 111, 0, 0], false);
    let e = write_forwarded(&bad, &leg(m, None), 8, 9700, None, &fwd, &mut out);
    assert_eq!(e, Err(RewriteError::Malformed));
    let m = PtMap::from_payloads(MediaKind::Audio, &publisher, &with_red);
    let e = write_forwarded(&bad, &leg(m, None), 8, 9700, None, &fwd, &mut out);
    assert_eq!(e, Err(RewriteError::Malformed));
}
