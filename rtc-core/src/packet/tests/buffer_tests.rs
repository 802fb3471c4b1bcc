//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
use super::super::*;

type Pkt = (PacketMeta<u64>, Vec<u8>);

/// Packetizes `frames` into a packet list starting at `seq0`; frame `k` has time `k * 3000`.
fn stream(codec: Codec, frames: &[Vec<u8>], mtu: usize, seq0: u64) -> Vec<Pkt> {
    let mut pk = CodecPacketizer::new(&codec).unwrap();
    let mut seq = seq0;
    let mut v = Vec::new();
    for (k, f) in frames.iter().enumerate() {
        let mut p = Vec::new();
        pk.packetize(mtu, f, &mut p).unwrap();
        let n = p.len();
        for (i, payload) in p.into_iter().enumerate() {
            let marker = pk.is_marker(&payload, i + 1 == n);
            v.push((
                PacketMeta {
                    seq,
                    time: 1_000_000 + k as u64 * 3000,
                    marker,
                    received: seq,
                },
                payload,
            ));
            seq += 1;
        }
    }
    v
}

/// VP8 frames of 25 bytes each (3 packets at MTU 14); `keys` are keyframes.
fn vp8_frames(n: usize, keys: &[usize]) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let mut f: Vec<u8> = (0..25).map(|i| (k * 7 + i) as u8).collect();
            f[0] = if keys.contains(&k) { 0x00 } else { 0x01 };
            f
        })
        .collect()
}

fn buf(codec: Codec) -> DepacketizingBuffer<u64> {
    DepacketizingBuffer::new(
        CodecDepacketizer::new(&codec).unwrap(),
        DepackConfig::default(),
    )
}

fn drain(b: &mut DepacketizingBuffer<u64>) -> Vec<Frame<u64>> {
    let mut v = Vec::new();
    while let Some(f) = b.pop() {
        v.push(f.expect("frame"));
    }
    v
}

#[test]
fn in_order_frames() {
    let frames = vp8_frames(5, &[0]);
    let pkts = stream(Codec::Vp8, &frames, 14, 100);
    assert_eq!(pkts.len(), 15);
    let mut b = buf(Codec::Vp8);
    let mut out = Vec::new();
    for (m, p) in &pkts {
        assert_eq!(b.push(*m, p), PushOutcome::Accepted);
        out.extend(drain(&mut b));
    }
    assert_eq!(out.len(), 5);
    for (k, f) in out.iter().enumerate() {
        assert_eq!(f.data, frames[k]);
        assert_eq!(f.time, 1_000_000 + k as u64 * 3000);
        assert_eq!(f.seq_range, 100 + 3 * k as u64..=102 + 3 * k as u64);
        assert_eq!(f.received, 102 + 3 * k as u64);
        assert!(f.contiguous);
        assert_eq!(f.keyframe, k == 0);
        let CodecExtra::Vp8(e) = f.extra else {
            panic!("extra")
        };
        assert_eq!(e.ids.picture_id, Some(k as u16));
    }
    assert!(!b.needs_keyframe());
}

#[test]
fn reordered_and_duplicated() {
    let frames = vp8_frames(6, &[0]);
    let mut pkts = stream(Codec::Vp8, &frames, 14, 7);
    // Reverse each group of 4 packets (crosses frame boundaries).
    for c in pkts.chunks_mut(4) {
        c.reverse();
    }
    let mut b = buf(Codec::Vp8);
    let mut out = Vec::new();
    for (m, p) in &pkts {
        assert_eq!(b.push(*m, p), PushOutcome::Accepted);
        let again = b.push(*m, p);
        assert!(matches!(
            again,
            PushOutcome::Duplicate | PushOutcome::TooOld
        ));
        out.extend(drain(&mut b));
    }
    assert_eq!(
        out.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
        frames
    );
    assert!(out.iter().all(|f| f.contiguous));
    // Everything emitted: a replay is too old.
    assert_eq!(b.push(pkts[0].0, &pkts[0].1), PushOutcome::TooOld);
}

#[test]
fn loss_skips_after_frames_ahead_and_needs_keyframe() {
    let frames = vp8_frames(7, &[0, 5]);
    let pkts = stream(Codec::Vp8, &frames, 14, 1000);
    let lost = 7; // middle packet of frame 2
    let mut b = buf(Codec::Vp8);
    let mut out = Vec::new();
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != lost {
            b.push(*m, p);
        }
        out.extend(drain(&mut b));
        if i == 11 {
            // Frames 0, 1 out; frame 2 incomplete with only frame 3 complete behind it.
            assert_eq!(out.len(), 2);
            assert!(!b.needs_keyframe());
        }
    }
    let times: Vec<u64> = out.iter().map(|f| (f.time - 1_000_000) / 3000).collect();
    assert_eq!(times, [0, 1, 3, 4, 5, 6]);
    let contiguous: Vec<bool> = out.iter().map(|f| f.contiguous).collect();
    assert_eq!(contiguous, [true, true, false, true, true, true]);
    // Loss happened and the next keyframe (frame 5) cleared the request.
    assert!(!b.needs_keyframe());
    // The late packet is too old now.
    assert_eq!(b.push(pkts[lost].0, &pkts[lost].1), PushOutcome::TooOld);
}

#[test]
fn needs_keyframe_until_keyframe() {
    let frames = vp8_frames(8, &[0, 7]);
    let pkts = stream(Codec::Vp8, &frames, 14, 0);
    let mut b = buf(Codec::Vp8);
    let mut out = Vec::new();
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != 4 {
            b.push(*m, p);
        }
        out.extend(drain(&mut b));
        let k = i / 3;
        if (5..7).contains(&k) && i % 3 == 2 {
            assert!(b.needs_keyframe(), "packet {i}");
        }
    }
    assert!(!b.needs_keyframe());
    assert_eq!(out.len(), 7);
}

#[test]
fn late_packet_repairs_within_window() {
    let frames = vp8_frames(4, &[0]);
    let pkts = stream(Codec::Vp8, &frames, 14, 50);
    let mut b = buf(Codec::Vp8);
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != 1 {
            b.push(*m, p);
        }
    }
    // Frame 0 incomplete, 3 complete frames behind it -> given up.
    let out = drain(&mut b);
    assert_eq!(out.len(), 3);
    assert!(!out[0].contiguous && b.needs_keyframe());

    let mut b = buf(Codec::Vp8);
    for (i, (m, p)) in pkts.iter().enumerate().take(9) {
        if i != 1 {
            b.push(*m, p);
        }
    }
    assert!(b.pop().is_none(), "waits for the retransmission");
    b.push(pkts[1].0, &pkts[1].1);
    let out = drain(&mut b);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|f| f.contiguous));
}

#[test]
fn large_sequence_numbers() {
    for seq0 in [65_530, 1 << 40, u64::MAX - 40] {
        let frames = vp8_frames(4, &[0]);
        let pkts = stream(Codec::Vp8, &frames, 14, seq0);
        let mut b = buf(Codec::Vp8);
        let mut out = Vec::new();
        for (m, p) in pkts.iter().rev() {
            b.push(*m, p);
        }
        out.extend(drain(&mut b));
        assert_eq!(out.len(), 4, "seq0 {seq0}");
        assert_eq!(out[3].seq_range, seq0 + 9..=seq0 + 11);
        assert!(out.iter().all(|f| f.contiguous));
    }
}

#[test]
fn padding_is_not_loss() {
    let frames = vp8_frames(3, &[0]);
    let mut pkts = stream(Codec::Vp8, &frames, 14, 0);
    // Shift frames 1.. by two padding packets after frame 0.
    for (m, _) in pkts.iter_mut().skip(3) {
        m.seq += 2;
    }
    let mut b = buf(Codec::Vp8);
    for (m, p) in &pkts[..3] {
        b.push(*m, p);
    }
    let pad = PacketMeta {
        seq: 3,
        time: 1_000_000,
        marker: false,
        received: 3,
    };
    b.push(pad, &[]);
    b.push(PacketMeta { seq: 4, ..pad }, &[]);
    for (m, p) in &pkts[3..] {
        b.push(*m, p);
    }
    let out = drain(&mut b);
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|f| f.contiguous));
    assert_eq!(out[1].seq_range, 5..=7);
}

#[test]
fn h264_frames_need_their_first_nal() {
    let nal = |t: u8, n: usize| -> Vec<u8> {
        let mut v = vec![0x60 | t];
        v.extend((1..n).map(|i| i as u8 | 1));
        v
    };
    let frame = |key: bool| {
        let mut f = Vec::new();
        for n in [
            if key { nal(5, 30) } else { nal(1, 30) },
            nal(1, 30),
            nal(1, 30),
        ] {
            f.extend([0, 0, 0, 1]);
            f.extend(n);
        }
        f
    };
    let frames: Vec<Vec<u8>> = (0..6).map(|k| frame(k == 0 || k == 5)).collect();
    // MTU 40: every NAL in its own single NAL unit packet.
    let pkts = stream(Codec::H264, &frames, 40, 10);
    assert_eq!(pkts.len(), 18);
    let mut b = buf(Codec::H264);
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != 6 {
            // Lose the first NAL of frame 2.
            b.push(*m, p);
        }
    }
    let out = drain(&mut b);
    let times: Vec<u64> = out.iter().map(|f| (f.time - 1_000_000) / 3000).collect();
    assert_eq!(times, [0, 1, 3, 4, 5]);
    assert_eq!(out[2].data, frames[3]);
    assert!(!out[2].contiguous);
    assert!(out[0].keyframe && out[4].keyframe && !out[3].keyframe);
    assert!(!b.needs_keyframe());
}

#[test]
fn opus_loss() {
    let frames: Vec<Vec<u8>> = (0..8).map(|k| vec![k as u8 + 1; 20]).collect();
    let pkts = stream(Codec::Opus, &frames, 1200, 0);
    let mut b = buf(Codec::Opus);
    let mut out = Vec::new();
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != 2 {
            b.push(*m, p);
        }
        out.extend(drain(&mut b));
    }
    assert_eq!(out.len(), 7);
    assert_eq!(out.iter().filter(|f| !f.contiguous).count(), 1);
    assert!(!out[2].contiguous && out[2].data == frames[3]);
    assert!(out.iter().all(|f| f.keyframe));
    assert!(!b.needs_keyframe());
}

#[test]
fn capacity_bounds_and_eviction() {
    let cfg = DepackConfig {
        capacity: 8,
        max_frames_ahead: 100,
        max_seq_distance: 1000,
    };
    let mut b: DepacketizingBuffer<u64> =
        DepacketizingBuffer::new(CodecDepacketizer::new(&Codec::Vp8).unwrap(), cfg);
    let frames = vp8_frames(6, &[0, 4]);
    let pkts = stream(Codec::Vp8, &frames, 14, 0);
    let mut out = Vec::new();
    for (i, (m, p)) in pkts.iter().enumerate() {
        if i != 1 {
            b.push(*m, p);
        }
        out.extend(drain(&mut b));
    }
    // Frame 0 stays incomplete until its packets fall out of the 8-slot window.
    assert_eq!(out.first().map(|f| f.contiguous), Some(false));
    assert!(out.len() >= 3);
    assert_eq!(out.last().map(|f| f.data.clone()), Some(frames[5].clone()));
    // A packet far outside the window is too old.
    assert_eq!(
        b.push(
            PacketMeta {
                seq: 0,
                time: 0,
                marker: true,
                received: 0
            },
            &[0x10, 0]
        ),
        PushOutcome::TooOld
    );
    // A huge jump clears everything without panicking.
    let far = PacketMeta {
        seq: 1 << 50,
        time: 1 << 40,
        marker: true,
        received: 0,
    };
    assert_eq!(b.push(far, &[0x10, 0x00, 1]), PushOutcome::Accepted);
    // Sequence numbers just below it may still arrive: wait, and ask for a keyframe.
    assert!(b.pop().is_none());
    assert!(b.needs_keyframe());
}

#[test]
fn garbage_payloads_error_out() {
    let mut b = buf(Codec::H264);
    let m = PacketMeta {
        seq: 5,
        time: 90,
        marker: true,
        received: 0,
    };
    b.push(m, &[25, 1, 2]);
    match b.pop() {
        Some(Err(DepackError::Depacketize {
            seq: 5,
            source: PacketError::Unsupported(25),
        })) => {}
        other => panic!("{other:?}"),
    }
    assert!(b.needs_keyframe());
    assert!(b.pop().is_none());
    let mut x: u64 = 99;
    for codec in [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1] {
        let mut b = buf(codec);
        for i in 0..3000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (x >> 60) as usize;
            let payload: Vec<u8> = (0..len).map(|j| (x >> (j * 4)) as u8).collect();
            let meta = PacketMeta {
                seq: i + (x >> 59) % 7,
                time: i / 3 + (x >> 62),
                marker: x & 4 != 0,
                received: i,
            };
            b.push(meta, &payload);
            while b.pop().is_some() {}
        }
    }
}
