//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
use super::*;
use proptest::prelude::*;

/// Packetizes `frame`, checks every payload against `mtu`, depacketizes the result.
fn roundtrip(codec: Codec, mtu: usize, frame: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>, CodecExtra) {
    let mut pk = CodecPacketizer::new(&codec).unwrap();
    let mut payloads = Vec::new();
    pk.packetize(mtu, frame, &mut payloads).expect("packetize");
    assert!(!payloads.is_empty());
    let mut dp = CodecDepacketizer::new(&codec).unwrap();
    let mut out = Vec::new();
    let mut extra = CodecExtra::None;
    for (i, p) in payloads.iter().enumerate() {
        assert!(p.len() <= mtu, "payload {} > mtu {mtu}", p.len());
        if i == 0 {
            assert!(dp.is_partition_head(p));
        } else if matches!(codec, Codec::Vp8 | Codec::Vp9) {
            assert!(!dp.is_partition_head(p));
        }
        let last = i + 1 == payloads.len();
        assert_eq!(
            dp.is_partition_tail(pk.is_marker(p, last), p),
            last || codec == Codec::Opus
        );
        dp.depacketize(p, &mut out, &mut extra)
            .expect("depacketize");
    }
    dp.finish(&mut out).expect("finish");
    (payloads, out, extra)
}

fn annexb(nals: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&[0, 0, 0, 1]);
        v.extend_from_slice(n);
    }
    v
}

/// Low-overhead AV1 temporal unit: TD, then OBUs `(type, payload)` with obu_size.
fn av1_tu(obus: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0x12, 0x00];
    for (t, p) in obus {
        v.push(t << 3 | 0x02);
        leb128::write(p.len(), &mut v);
        v.extend_from_slice(p);
    }
    v
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

const MTUS: [usize; 6] = [3, 7, 100, 1000, 1200, 65536];

#[test]
fn opus_roundtrip_and_limits() {
    let f = pattern(120, 3);
    let (p, out, _) = roundtrip(Codec::Opus, 1200, &f);
    assert_eq!(p.len(), 1);
    assert_eq!(out, f);
    let mut v = Vec::new();
    assert_eq!(
        opus::OpusPacketizer.packetize(100, &f, &mut v),
        Err(PacketError::TooLarge { len: 120, mtu: 100 })
    );
    assert_eq!(
        opus::OpusPacketizer.packetize(100, &[], &mut v),
        Err(PacketError::EmptyFrame)
    );
    assert!(v.is_empty());
}

#[test]
fn vp8_roundtrip_many_mtus() {
    for len in [1, 5, 1196, 1197, 2392, 30_000, 300_000] {
        let mut f = pattern(len, 7);
        f[0] &= 0xfe; // keyframe (P=0)
        for mtu in [5, 6, 100, 1200, 65536] {
            let (p, out, extra) = roundtrip(Codec::Vp8, mtu, &f);
            assert_eq!(out, f, "len {len} mtu {mtu}");
            assert_eq!(p.len(), len.div_ceil(mtu - 4));
            let CodecExtra::Vp8(e) = extra else {
                panic!("extra")
            };
            assert_eq!(e.ids.picture_id, Some(0));
            assert!(
                CodecDepacketizer::new(&Codec::Vp8)
                    .unwrap()
                    .is_keyframe(&p[0])
            );
        }
    }
    // Exact multiple: 2 * (1200 - 4) bytes -> exactly 2 full packets.
    let (p, _, _) = roundtrip(Codec::Vp8, 1200, &pattern(2392, 1));
    assert_eq!(p.iter().map(Vec::len).collect::<Vec<_>>(), [1200, 1200]);
    let mut v = Vec::new();
    assert_eq!(
        vp8::Vp8Packetizer::default().packetize(4, &[1], &mut v),
        Err(PacketError::MtuTooSmall(4))
    );
}

#[test]
fn vp8_picture_id_increments_and_wraps() {
    let mut pk = vp8::Vp8Packetizer::new(Some(0x7fff));
    let mut v = Vec::new();
    pk.packetize(1200, &[1, 2, 3], &mut v).unwrap();
    pk.packetize(1200, &[1, 2, 3], &mut v).unwrap();
    assert_eq!(&v[0][..4], &[0x90, 0x80, 0xff, 0xff]);
    assert_eq!(&v[1][..4], &[0x90, 0x80, 0x80, 0x00]);
    let mut pk = vp8::Vp8Packetizer::new(None);
    let mut v = Vec::new();
    pk.packetize(3, &[0xaa, 0xbb, 0xcc], &mut v).unwrap();
    assert_eq!(v, vec![vec![0x10, 0xaa, 0xbb], vec![0x00, 0xcc]]);
}

#[test]
fn vp8_descriptor_vectors() {
    // RFC 7741 §4.2 layout: X I L T K all set, 15-bit picture id 0x0123, TL0PICIDX 5,
    // TID 2, Y 1, KEYIDX 7.
    let b = [0x90, 0xf0, 0x81, 0x23, 0x05, 0b1010_0111, 0x9d];
    let (d, n) = vp8::Vp8Descriptor::parse(&b).unwrap();
    assert_eq!(n, 6);
    assert_eq!(
        d,
        vp8::Vp8Descriptor {
            non_reference: false,
            start: true,
            partition_id: 0,
            picture_id: Some(0x123),
            long_picture_id: true,
            tl0_pic_idx: Some(5),
            temporal_id: Some(2),
            layer_sync: true,
            key_idx: Some(7),
        }
    );
    let mut w = [0u8; 6];
    assert_eq!(d.write(&mut w), Ok(6));
    assert_eq!(w, b[..6]);
    // 7-bit picture id, N bit, partition 1, no S.
    let (d, n) = vp8::Vp8Descriptor::parse(&[0xa1, 0x80, 0x11, 0]).unwrap();
    assert_eq!(
        (n, d.non_reference, d.start, d.partition_id, d.picture_id),
        (3, true, false, 1, Some(0x11))
    );
    // Minimal descriptor.
    assert_eq!(vp8::Vp8Descriptor::parse(&[0x10]).unwrap().1, 1);
    // Truncations.
    for b in [
        &[][..],
        &[0x80],
        &[0x80, 0x80],
        &[0x80, 0x80, 0x80],
        &[0x80, 0x40],
        &[0x80, 0x20],
    ] {
        assert_eq!(vp8::Vp8Descriptor::parse(b), Err(PacketError::Truncated));
    }
    assert_eq!(
        vp8::Vp8Descriptor::default().write(&mut []),
        Err(PacketError::Truncated)
    );
    // Descriptor without media.
    let mut out = Vec::new();
    assert_eq!(
        vp8::Vp8Depacketizer.depacketize(
            &[0x90, 0x80, 0x81, 0x00],
            &mut out,
            &mut CodecExtra::None
        ),
        Err(PacketError::EmptyPayload)
    );
    // Keyframe detection from the P bit.
    let d = vp8::Vp8Depacketizer;
    assert!(d.is_keyframe(&[0x10, 0x00]));
    assert!(!d.is_keyframe(&[0x10, 0x01]));
    assert!(!d.is_keyframe(&[0x00, 0x00]));
}

#[test]
fn vp9_roundtrip_keyframe_with_ss() {
    let mut f = vp9::test_keyframe_header(1280, 720);
    f.extend(pattern(5000, 2));
    for mtu in [20, 100, 1200, 65536] {
        let (p, out, extra) = roundtrip(Codec::Vp9, mtu, &f);
        assert_eq!(out, f);
        let (d, n) = vp9::Vp9Descriptor::parse(&p[0]).unwrap();
        assert_eq!(n, 8);
        assert!(d.start && !d.inter_picture && d.end == (p.len() == 1));
        let ss = d.ss.unwrap();
        assert_eq!(
            (ss.spatial_layers, ss.resolutions.unwrap()[0]),
            (1, (1280, 720))
        );
        let CodecExtra::Vp9(e) = extra else {
            panic!("extra")
        };
        assert_eq!((e.ids.picture_id, e.ss), (Some(0), Some(ss)));
        assert!(
            CodecDepacketizer::new(&Codec::Vp9)
                .unwrap()
                .is_keyframe(&p[0])
        );
        let (last, _) = vp9::Vp9Descriptor::parse(p.last().unwrap()).unwrap();
        assert!(last.end);
    }
    let mut v = Vec::new();
    assert_eq!(
        vp9::Vp9Packetizer::default().packetize(8, &f, &mut v),
        Err(PacketError::MtuTooSmall(8))
    );
}

#[test]
fn vp9_inter_frame_and_descriptor_vectors() {
    let f = [0x84u8, 1, 2, 3, 4, 5, 6];
    let mut pk = vp9::Vp9Packetizer::new(0x7fff);
    let mut p = Vec::new();
    pk.packetize(5, &f, &mut p).unwrap();
    pk.packetize(1200, &f, &mut p).unwrap();
    // I=1 P=1 B=1 ; picture id 0x7fff ; 2 bytes of media.
    assert_eq!(p[0], [0xc8, 0xff, 0xff, 0x84, 1]);
    assert_eq!(p[1], [0xc0, 0xff, 0xff, 2, 3]);
    assert_eq!(p[3], [0xc4, 0xff, 0xff, 6]);
    assert_eq!(p[4][..3], [0xcc, 0x80, 0x00]);
    assert!(
        !CodecDepacketizer::new(&Codec::Vp9)
            .unwrap()
            .is_keyframe(&p[0])
    );
    // Flexible mode, layers, 3 P_DIFFs, SS with 2 layers + 1 picture group.
    let b = [
        0xfa,
        0x05,
        0b0110_0011,
        0x03,
        0x05,
        0x06,
        0b0011_1000,
        0x01,
        0x40,
        0x00,
        0xb4,
        0x02,
        0x80,
        0x01,
        0x68,
        0x01,
        0b0010_0100,
        0x01,
    ];
    let (d, n) = vp9::Vp9Descriptor::parse(&b).unwrap();
    assert_eq!(n, b.len());
    assert_eq!(d.picture_id, Some(5));
    assert_eq!(
        d.layer,
        Some(vp9::Vp9Layer {
            temporal_id: 3,
            switching_up: false,
            spatial_id: 1,
            inter_layer_dependency: true
        })
    );
    assert_eq!(
        (d.p_diff, d.p_diff_count, d.tl0_pic_idx),
        ([1, 2, 3], 3, None)
    );
    let ss = d.ss.unwrap();
    assert_eq!(ss.spatial_layers, 2);
    assert_eq!(&ss.resolutions.unwrap()[..2], &[(320, 180), (640, 360)]);
    assert_eq!(ss.picture_groups, Some(1));
    assert!(
        !CodecDepacketizer::new(&Codec::Vp9)
            .unwrap()
            .is_partition_head(&b)
    ); // SID 1
    // Four P_DIFFs is invalid.
    assert_eq!(
        vp9::Vp9Descriptor::parse(&[0x50, 0x03, 0x03, 0x03, 0x03]),
        Err(PacketError::InvalidHeader("vp9 more than 3 P_DIFF"))
    );
    for cut in 0..b.len() {
        assert!(vp9::Vp9Descriptor::parse(&b[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn h264_stap_a_and_fu_a_vectors() {
    let sps = vec![0x67, 0x42, 0xc0, 0x1f, 0xda];
    let pps = vec![0x68, 0xce, 0x3c, 0x80];
    let idr = pattern(3000, 9);
    let mut idr = idr;
    idr[0] = 0x65;
    let frame = annexb(&[sps.clone(), pps.clone(), idr.clone()]);
    let (p, out, extra) = roundtrip(Codec::H264, 1200, &frame);
    assert_eq!(out, frame);
    assert_eq!(extra, CodecExtra::H264);
    // STAP-A (RFC 6184 §5.7.1): F=0 NRI=3 type 24, then 16-bit size + NAL each.
    let mut stap = vec![0x78, 0, 5];
    stap.extend(&sps);
    stap.extend([0, 4]);
    stap.extend(&pps);
    assert_eq!(p[0], stap);
    // FU-A (§5.8): indicator NRI=3 type 28; header S/E + type 5.
    assert_eq!(p.len(), 4);
    assert_eq!(p[1][..2], [0x7c, 0x85]);
    assert_eq!(p[2][..2], [0x7c, 0x05]);
    assert_eq!(p[3][..2], [0x7c, 0x45]);
    let d = CodecDepacketizer::new(&Codec::H264).unwrap();
    assert!(d.is_keyframe(&p[0]) && d.is_keyframe(&p[1]) && !d.is_keyframe(&p[2]));
    assert!(d.is_partition_head(&p[1]) && !d.is_partition_head(&p[2]));
    // 3-byte start codes and trailing zeros are accepted.
    let mut f3 = vec![0, 0, 1];
    f3.extend(&sps);
    f3.extend([0, 0, 0, 0, 1]);
    f3.extend(&pps);
    let (_, out, _) = roundtrip(Codec::H264, 1200, &f3);
    assert_eq!(out, annexb(&[sps.clone(), pps.clone()]));
}

#[test]
fn h264_modes_and_mtus() {
    let mut nals: Vec<Vec<u8>> = (0..6).map(|i| pattern(10 + i * 700, i as u8)).collect();
    for n in &mut nals {
        n[0] = 0x41;
    }
    let frame = annexb(&nals);
    for mtu in MTUS {
        let (_, out, _) = roundtrip(Codec::H264, mtu, &frame);
        assert_eq!(out, frame, "mtu {mtu}");
    }
    let mut m0 = h264::H264Packetizer::new(0);
    let mut v = Vec::new();
    assert_eq!(
        m0.packetize(1200, &frame, &mut v),
        Err(PacketError::TooLarge {
            len: 1410,
            mtu: 1200
        })
    );
    assert!(v.is_empty());
    m0.packetize(4000, &frame, &mut v).unwrap();
    assert_eq!(v.len(), 6);
    assert!(v.iter().zip(&nals).all(|(p, n)| p == n));
    assert_eq!(
        h264::H264Packetizer::default().packetize(2, &frame, &mut v),
        Err(PacketError::MtuTooSmall(2))
    );
    assert_eq!(
        h264::H264Packetizer::default().packetize(1200, &[0, 0, 0, 1], &mut v),
        Err(PacketError::EmptyFrame)
    );
}

#[test]
fn h264_bad_payloads() {
    let mut d = h264::H264Depacketizer::default();
    let mut out = Vec::new();
    let mut x = CodecExtra::None;
    assert_eq!(
        d.depacketize(&[], &mut out, &mut x),
        Err(PacketError::EmptyPayload)
    );
    assert_eq!(
        d.depacketize(&[0x80 | 1], &mut out, &mut x),
        Err(PacketError::InvalidHeader("h264 forbidden bit"))
    );
    assert_eq!(
        d.depacketize(&[25, 0], &mut out, &mut x),
        Err(PacketError::Unsupported(25))
    );
    assert_eq!(
        d.depacketize(&[24, 0, 5, 1], &mut out, &mut x),
        Err(PacketError::Truncated)
    );
    assert_eq!(
        d.depacketize(&[24, 0, 0], &mut out, &mut x),
        Err(PacketError::InvalidHeader("h264 STAP-A zero-length NAL"))
    );
    assert_eq!(
        d.depacketize(&[28, 0x05, 1], &mut out, &mut x),
        Err(PacketError::Fragmentation)
    );
    assert_eq!(
        d.depacketize(&[28, 0xc5, 1], &mut out, &mut x),
        Err(PacketError::InvalidHeader("h264 FU-A with S and E"))
    );
    assert!(out.is_empty());
    d.depacketize(&[28, 0x85, 1], &mut out, &mut x).unwrap();
    assert_eq!(
        d.depacketize(&[1, 2], &mut out, &mut x),
        Err(PacketError::Fragmentation)
    );
    assert_eq!(d.finish(&mut out), Err(PacketError::Fragmentation));
    assert_eq!(d.finish(&mut out), Ok(()));
}

#[test]
fn av1_roundtrip_and_aggregation_header() {
    let tu = av1_tu(&[(1, pattern(12, 1)), (6, pattern(40, 2))]);
    let (p, out, extra) = roundtrip(Codec::Av1, 1200, &tu);
    assert_eq!(out, tu);
    assert_eq!(extra, CodecExtra::Av1);
    // One packet: Z=0 Y=0 W=2 N=1 (sequence header present); first element length 13
    // (header + 12), OBU header without obu_has_size_field, last element unsized.
    assert_eq!(p.len(), 1);
    assert_eq!(p[0][..3], [0x28, 13, 0x08]);
    assert_eq!(p[0][15], 0x30);
    assert_eq!(p[0].len(), 1 + 1 + 13 + 41);
    assert!(
        CodecDepacketizer::new(&Codec::Av1)
            .unwrap()
            .is_keyframe(&p[0])
    );
    // Fragmented: Y on the first packet, Z on the next, W=1 (single element).
    let tu = av1_tu(&[(6, pattern(100, 3))]);
    let (p, out, _) = roundtrip(Codec::Av1, 60, &tu);
    assert_eq!(out, tu);
    assert_eq!(p[0][0], 0x50); // Z=0 Y=1 W=1 N=0
    assert_eq!(p[1][0], 0x90); // Z=1 Y=0 W=1
    assert!(
        !CodecDepacketizer::new(&Codec::Av1)
            .unwrap()
            .is_keyframe(&p[0])
    );
    // Many OBUs: W=0 with all elements sized; several MTUs incl. tiny ones.
    let obus: Vec<(u8, Vec<u8>)> = (0..9)
        .map(|i| (if i == 0 { 1 } else { 6 }, pattern(i * 300 + 1, i as u8)))
        .collect();
    let tu = av1_tu(&obus);
    for mtu in MTUS {
        let (_, out, _) = roundtrip(Codec::Av1, mtu, &tu);
        assert_eq!(out, tu, "mtu {mtu}");
    }
    let (p, _, _) = roundtrip(Codec::Av1, 65536, &tu);
    assert_eq!(p[0][0], 0x08); // W=0, N=1
}

#[test]
fn av1_input_variants_and_errors() {
    // OBU without obu_size (last in TU) and with extension; tile list dropped.
    let frame = [0x12, 0x00, 0x42, 0x03, 1, 2, 3, 0x34, 0x20, 9, 9];
    let (p, out, _) = roundtrip(Codec::Av1, 1200, &frame);
    assert_eq!(out, [0x12, 0x00, 0x36, 0x20, 2, 9, 9]);
    assert_eq!(p[0], [0x10, 0x34, 0x20, 9, 9]);
    let mut v = Vec::new();
    assert_eq!(
        av1::Av1Packetizer.packetize(1200, &[0x12, 0x00], &mut v),
        Err(PacketError::EmptyFrame)
    );
    assert_eq!(
        av1::Av1Packetizer.packetize(1200, &[0x32, 0x05, 1], &mut v),
        Err(PacketError::Truncated)
    );
    assert_eq!(
        av1::Av1Packetizer.packetize(2, &frame, &mut v),
        Err(PacketError::MtuTooSmall(2))
    );
    let mut d = av1::Av1Depacketizer::default();
    let mut out = Vec::new();
    let mut x = CodecExtra::None;
    assert_eq!(
        d.depacketize(&[0x10], &mut out, &mut x),
        Err(PacketError::EmptyPayload)
    );
    assert_eq!(
        d.depacketize(&[0x90, 0x30, 1], &mut out, &mut x),
        Err(PacketError::Fragmentation)
    );
    assert_eq!(
        d.depacketize(&[0x20, 0x02, 0x30, 1], &mut out, &mut x),
        Err(PacketError::InvalidHeader(
            "av1 element count differs from W"
        ))
    );
    assert_eq!(
        d.depacketize(&[0x00, 0x05, 0x30], &mut out, &mut x),
        Err(PacketError::Truncated)
    );
    assert!(
        d.depacketize(
            &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &mut out,
            &mut x
        )
        .is_err()
    );
    d.finish(&mut out).unwrap();
    d.depacketize(&[0x50, 0x30, 1], &mut out, &mut x).unwrap();
    assert_eq!(d.finish(&mut out), Err(PacketError::Fragmentation));
}

#[test]
fn leb128_values() {
    for v in [0usize, 1, 127, 128, 300, 16383, 16384, u32::MAX as usize] {
        let mut b = Vec::new();
        leb128::write(v, &mut b);
        assert_eq!(b.len(), leb128::len(v));
        assert_eq!(leb128::read(&b), Ok((v, b.len())));
    }
    assert_eq!(leb128::read(&[0x80, 0x01]), Ok((128, 2)));
    assert_eq!(leb128::read(&[0x80]), Err(PacketError::Truncated));
    assert!(leb128::read(&[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
}

#[test]
fn even_chunks_sizes() {
    let data = pattern(10, 1);
    let sizes = |max| even_chunks(&data, max).map(<[u8]>::len).collect::<Vec<_>>();
    assert_eq!(sizes(4), vec![4, 3, 3]);
    assert_eq!(sizes(5), vec![5, 5]);
    assert_eq!(sizes(3), vec![3, 3, 2, 2]);
    assert_eq!(sizes(100), vec![10]);
    assert_eq!(even_chunks(&data, 3).collect::<Vec<_>>().concat(), data);
    assert_eq!(even_chunks(&[], 3).len(), 0);
}

#[test]
fn picture_id_field() {
    for (pid, force, bytes) in [
        (5u16, false, &[0x05][..]),
        (5, true, &[0x80, 0x05]),
        (0x7f, false, &[0x7f]),
        (0x80, false, &[0x80, 0x80]),
        (0xffff, false, &[0xff, 0xff]),
    ] {
        let long = picture_id::is_long(pid, force);
        let mut out = Vec::new();
        picture_id::write(pid, long, |b| out.push(b));
        assert_eq!(out, bytes);
        assert_eq!(picture_id::len(long), bytes.len());
        assert_eq!(picture_id::read(bytes), Ok((pid & 0x7fff, long)));
    }
    assert_eq!(picture_id::read(&[]), Err(PacketError::Truncated));
    assert_eq!(picture_id::read(&[0x81]), Err(PacketError::Truncated));
}

#[test]
fn garbage_never_panics() {
    let mut x: u32 = 0x1234_5678;
    for codec in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
        let mut d = CodecDepacketizer::new(&codec).unwrap();
        for len in 0..300 {
            let buf: Vec<u8> = (0..len % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let mut out = Vec::new();
            let _ = d.depacketize(&buf, &mut out, &mut CodecExtra::None);
            let _ = d.is_keyframe(&buf) | d.is_partition_head(&buf);
            if len % 3 == 0 {
                let _ = d.finish(&mut out);
            }
            let mut v = Vec::new();
            let _ = CodecPacketizer::new(&codec)
                .unwrap()
                .packetize(len % 50, &buf, &mut v);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_vp8_vp9_opus_roundtrip(frame in proptest::collection::vec(any::<u8>(), 1..5000), mtu in 20usize..2000) {
        for codec in [Codec::Vp8, Codec::Vp9] {
            let (_, out, _) = roundtrip(codec, mtu, &frame);
            prop_assert_eq!(&out, &frame);
        }
        if frame.len() <= mtu {
            let (_, out, _) = roundtrip(Codec::Opus, mtu, &frame);
            prop_assert_eq!(&out, &frame);
        }
    }

    #[test]
    fn prop_h264_roundtrip(
        nals in proptest::collection::vec(
            (1u8..=23, 0u8..4, proptest::collection::vec(1u8..=255, 0..3000)), 1..8),
        mtu in 3usize..1500,
    ) {
        let nals: Vec<Vec<u8>> = nals.into_iter().map(|(t, nri, mut body)| {
            body.insert(0, nri << 5 | t);
            body
        }).collect();
        let frame = annexb(&nals);
        let (_, out, _) = roundtrip(Codec::H264, mtu, &frame);
        prop_assert_eq!(out, frame);
    }

    #[test]
    fn prop_av1_roundtrip(
        obus in proptest::collection::vec(
            (prop_oneof![Just(1u8), Just(3), Just(4), Just(5), Just(6), Just(15)],
             proptest::option::of(any::<u8>()),
             proptest::collection::vec(any::<u8>(), 0..3000)), 1..8),
        mtu in 3usize..1500,
    ) {
        let mut tu = vec![0x12, 0x00];
        for (t, ext, p) in &obus {
            tu.push(t << 3 | 0x02 | if ext.is_some() { 0x04 } else { 0 });
            if let Some(e) = ext { tu.push(*e); }
            leb128::write(p.len(), &mut tu);
            tu.extend_from_slice(p);
        }
        let (_, out, _) = roundtrip(Codec::Av1, mtu, &tu);
        prop_assert_eq!(out, tu);
    }

    #[test]
    fn prop_vp8_descriptor_roundtrip(
        n in any::<bool>(), s in any::<bool>(), pid in 0u8..8,
        pic in proptest::option::of(0u16..0x8000), long in any::<bool>(),
        tl0 in proptest::option::of(any::<u8>()), tid in proptest::option::of(0u8..4),
        y in any::<bool>(), key in proptest::option::of(0u8..32),
    ) {
        let d = vp8::Vp8Descriptor {
            non_reference: n, start: s, partition_id: pid, picture_id: pic,
            long_picture_id: pic.is_some_and(|p| long || p > 0x7f), tl0_pic_idx: tl0,
            temporal_id: tid, layer_sync: y && (tid.is_some() || key.is_some()), key_idx: key,
        };
        let mut buf = [0u8; 8];
        let len = d.write(&mut buf).unwrap();
        prop_assert_eq!(len, d.encoded_len());
        prop_assert_eq!(vp8::Vp8Descriptor::parse(&buf[..len]), Ok((d, len)));
        prop_assert_eq!(d.write(&mut buf[..len - 1]), Err(PacketError::Truncated));
    }

    #[test]
    fn prop_vp9_descriptor_roundtrip(
        pic in proptest::option::of(0u16..0x8000), long in any::<bool>(),
        p in any::<bool>(), f in any::<bool>(), b in any::<bool>(), e in any::<bool>(), z in any::<bool>(),
        layer in proptest::option::of((0u8..8, any::<bool>(), 0u8..8, any::<bool>())),
        tl0 in any::<u8>(), diffs in proptest::collection::vec(0u8..128, 1..=3),
        ss in proptest::option::of((1u8..=8, any::<bool>(), any::<bool>(), any::<[(u16, u16); 8]>())),
    ) {
        let mut d = vp9::Vp9Descriptor {
            picture_id: pic, long_picture_id: pic.is_some_and(|p| long || p > 0x7f),
            inter_picture: p, flexible: f, start: b, end: e, not_upper_reference: z,
            layer: layer.map(|(t, u, s, d)| vp9::Vp9Layer { temporal_id: t, switching_up: u, spatial_id: s, inter_layer_dependency: d }),
            tl0_pic_idx: (layer.is_some() && !f).then_some(tl0),
            ss: ss.map(|(n, y, g, mut res)| {
                for r in res.iter_mut().skip(usize::from(n)) { *r = (0, 0); }
                vp9::Vp9Ss { spatial_layers: n, resolutions: y.then_some(res), picture_groups: g.then_some(0) }
            }),
            ..Default::default()
        };
        if f && p {
            d.p_diff_count = diffs.len() as u8;
            d.p_diff[..diffs.len()].copy_from_slice(&diffs);
        }
        let mut buf = [0u8; 64];
        let len = d.write(&mut buf).unwrap();
        prop_assert_eq!(len, d.encoded_len());
        prop_assert_eq!(vp9::Vp9Descriptor::parse(&buf[..len]), Ok((d, len)));
    }
}

mod buffer_tests;

/// A packetizer that states only how to split (one byte per payload, failing on 0xff
/// after some output): everything else comes from the trait's defaults.
struct Bytewise;

impl Packetizer for Bytewise {
    fn split_frame(&mut self, _mtu: usize, frame: &[u8], out: &mut Payloads) -> PacketResult {
        for &b in frame {
            if b == 0xff {
                return Err(PacketError::InvalidBitstream("0xff"));
            }
            out.push(vec![b]);
        }
        Ok(())
    }
}

#[test]
fn packetizer_defaults() {
    let mut p = Bytewise;
    let mut out = vec![vec![9]];
    assert_eq!(p.packetize(10, &[], &mut out), Err(PacketError::EmptyFrame));
    assert_eq!(
        p.packetize(10, &[1, 2, 0xff], &mut out),
        Err(PacketError::InvalidBitstream("0xff"))
    );
    // The partial output of the failed frame is gone; what was there before is kept.
    assert_eq!(out, [vec![9]]);
    p.packetize(10, &[1, 2], &mut out).unwrap();
    assert_eq!(out, [vec![9], vec![1], vec![2]]);
    assert!(p.is_marker(&out[2], true));
    assert!(!p.is_marker(&out[1], false));
}

/// A depacketizer that states only what it must.
struct Passthrough;

impl Depacketizer for Passthrough {
    fn depacketize(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
        _extra: &mut CodecExtra,
    ) -> PacketResult {
        out.extend_from_slice(payload);
        Ok(())
    }

    fn is_partition_head(&self, _payload: &[u8]) -> bool {
        true
    }

    fn is_keyframe(&self, _payload: &[u8]) -> bool {
        false
    }
}

#[test]
fn depacketizer_defaults() {
    let mut d = Passthrough;
    let mut out = vec![1, 2];
    d.finish(&mut out).unwrap();
    assert_eq!(out, [1, 2]);
    assert!(d.is_partition_tail(true, &[0]));
    assert!(!d.is_partition_tail(false, &[0]));
    assert!(d.head_is_frame_start());
}

#[test]
fn codecs_with_payloaders() {
    let all = [
        Codec::Opus,
        Codec::Vp8,
        Codec::Vp9,
        Codec::H264,
        Codec::Av1,
        Codec::Rtx,
        Codec::Red,
        Codec::Ulpfec,
        Codec::Flexfec,
        Codec::TelephoneEvent,
        Codec::G722,
        Codec::Pcmu,
        Codec::Pcma,
        Codec::Other("X-Foo".into()),
    ];
    for c in &all {
        assert_eq!(c.can_packetize(), CodecPacketizer::new(c).is_some(), "{c}");
        assert_eq!(
            c.can_packetize(),
            CodecDepacketizer::new(c).is_some(),
            "{c}"
        );
    }
    assert_eq!(all.iter().filter(|c| c.can_packetize()).count(), 5);
}

#[test]
fn every_packetizer_rejects_without_output() {
    // An H.264 IDR NAL in Annex-B; as raw bytes it is also a (7-byte) Opus frame.
    let frame = [0, 0, 0, 1, 0x65, 1, 2];
    for codec in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
        let mut pk = CodecPacketizer::new(&codec).unwrap();
        let mut out = vec![vec![7u8]];
        assert_eq!(
            pk.packetize(1200, &[], &mut out),
            Err(PacketError::EmptyFrame),
            "{codec}"
        );
        assert!(pk.packetize(1, &frame, &mut out).is_err(), "{codec}");
        assert_eq!(out, [vec![7u8]], "{codec}");
    }
}
