#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::packet::{
    Codec, CodecDepacketizer, CodecExtra, CodecPacketizer, DepackConfig, Depacketizer,
    DepacketizingBuffer, PacketMeta, Packetizer,
};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let codec = match sel % 5 {
        0 => Codec::Opus,
        1 => Codec::Vp8,
        2 => Codec::Vp9,
        3 => Codec::H264,
        _ => Codec::Av1,
    };
    // Whole input as one payload.
    let Some(mut d) = CodecDepacketizer::new(&codec) else {
        return;
    };
    let mut out = Vec::new();
    let mut extra = CodecExtra::None;
    let _ = d.is_partition_head(rest);
    let _ = d.is_keyframe(rest);
    let ok = d.depacketize(rest, &mut out, &mut extra).is_ok();
    let _ = d.finish(&mut out);
    // A successfully depacketized frame re-packetizes without panicking.
    if ok && !out.is_empty() {
        let mut p = Vec::new();
        if let Some(mut packetizer) = CodecPacketizer::new(&codec) {
            let _ = packetizer.packetize(1200, &out, &mut p);
        }
    }
    // Records: [len, seq delta, time delta, marker] + payload, fed to a small buffer.
    let cfg = DepackConfig {
        capacity: 64,
        max_frames_ahead: 2,
        max_seq_distance: 32,
    };
    let Some(depack) = CodecDepacketizer::new(&codec) else {
        return;
    };
    let mut buf: DepacketizingBuffer<u64> = DepacketizingBuffer::new(depack, cfg);
    let (mut seq, mut time) = (u64::from(sel) << 56, 0u64);
    let mut rest = rest;
    while let [len, ds, dt, m, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, r) = tail.split_at(n);
        rest = r;
        seq = seq.wrapping_add(u64::from(*ds)).wrapping_sub(8);
        time = time.wrapping_add(u64::from(*dt));
        let meta = PacketMeta {
            seq,
            time,
            marker: m & 1 != 0,
            received: seq,
        };
        buf.push(meta, payload);
        while buf.pop().is_some() {}
    }
    let _ = buf.needs_keyframe();
});
