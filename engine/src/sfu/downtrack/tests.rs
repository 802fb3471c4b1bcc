use super::*;
use crate::sfu::codec::{parse_h264, parse_vp8};

const CLOCK: u32 = 90_000;
const FRAME: u32 = 3000;

/// A simulated simulcast publisher: per layer its own sequence and timestamp bases,
/// all layers sampling the same capture clock.
struct Publisher {
    seq: [u64; 3],
    ts_base: [u32; 3],
    start: Instant,
}

impl Publisher {
    fn new() -> Publisher {
        Publisher {
            seq: [1000, 50_000, 65_000],
            ts_base: [7, 1_000_000, 4_000_000_000],
            start: Instant::now(),
        }
    }

    /// The SR of `layer`: capture time 0 ↔ its ts base, NTP 1000 s.
    fn sr(&self, layer: usize) -> SrClock {
        SrClock {
            rtp_ts: self.ts_base[layer],
            ntp: 1000u64 << 32,
        }
    }

    /// `n` packets of frame `f` of `layer`.
    fn frame(&mut self, layer: usize, f: u32, n: usize, key: bool) -> Vec<PacketMeta> {
        let ts = self.ts_base[layer].wrapping_add(f * FRAME);
        let at = self.start + Duration::from_millis(u64::from(f) * 33);
        (0..n)
            .map(|i| {
                let s = self.seq[layer];
                self.seq[layer] += 1;
                let mut m = PacketMeta::new(s, ts, i + 1 == n, 12, 1000, at);
                m.keyframe = key && i == 0;
                m
            })
            .collect()
    }
}

fn fwd(v: Verdict) -> (u16, u32, bool) {
    match v {
        Verdict::Forward {
            seq, ts, switched, ..
        } => (seq, ts, switched),
        Verdict::Drop(r) => panic!("dropped: {r:?}"),
    }
}

fn none() -> PayloadFacts {
    PayloadFacts::None
}

#[test]
fn size_of_downtrack_within_budget() {
    let size = std::mem::size_of::<DownTrack>();
    println!("size_of::<DownTrack>() = {size} bytes");
    assert_eq!(std::mem::size_of::<NackSlot>(), 16);
    assert!(size <= 16 * 1024, "{size}");
}

#[test]
fn fifty_switches_keep_one_gapless_stream_with_rising_ts() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    for l in 0..3 {
        d.set_sender_report(l as u8, p.sr(l));
    }
    d.set_target_layer(Some(0));
    let mut out: Vec<(u16, u32, bool, u32)> = Vec::new(); // seq, ts, marker, frame
    let mut switches = 0;
    let mut target = 0u8;
    let mut f = 0u32;
    while switches < 50 {
        // Every 4 frames a new target; every layer has a keyframe every 3 frames,
        // staggered.
        if f.is_multiple_of(4) {
            target = (target + 1 + (f / 4 % 2) as u8) % 3;
            d.set_target_layer(Some(target));
        }
        // The current layer last: a switch keyframe arrives before the old layer's
        // copy of the same frame, which then counts as a straggler.
        let cur = d.current_layer().map_or(0, usize::from);
        let order = [(cur + 1) % 3, (cur + 2) % 3, cur];
        for layer in order {
            let key = (f + layer as u32).is_multiple_of(3);
            for m in p.frame(layer, f, 3, key) {
                if let Verdict::Forward {
                    seq, ts, switched, ..
                } = d.on_packet(layer as u8, &m, &none(), m.arrival)
                {
                    if switched {
                        switches += 1;
                    }
                    out.push((seq, ts, m.marker, f));
                }
            }
        }
        f += 1;
        assert!(f < 10_000);
    }
    // From the first keyframe on, every frame was forwarded from exactly one layer,
    // whole.
    let first = out[0].3;
    assert_eq!(out.len() as u32, 3 * (f - first));
    for w in out.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_eq!(b.0, a.0.wrapping_add(1), "gap between {a:?} and {b:?}");
        if a.3 == b.3 {
            assert_eq!(a.1, b.1);
        } else {
            assert!(ts_after(b.1, a.1), "ts not rising {a:?} {b:?}");
            // Same capture clock: exactly one frame interval, no drift.
            assert_eq!(b.1.wrapping_sub(a.1), FRAME * (b.3 - a.3));
        }
    }
}

#[test]
fn restart_source_continues_numbering_and_timeline() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let mut last = (0u16, 0u32);
    for f in 0..3 {
        for m in p.frame(0, f, 2, f == 0) {
            let (seq, ts, _) = fwd(d.on_packet(0, &m, &none(), m.arrival));
            last = (seq, ts);
        }
    }
    // Another publisher: unrelated numbers, 100 ms after the last packet.
    d.restart_source();
    let mut q = Publisher::new();
    q.seq = [7, 8, 9];
    q.ts_base = [123_456, 0, 0];
    q.start = p.start + Duration::from_millis(2 * 33 + 100);
    let f = q.frame(0, 0, 2, false);
    assert_eq!(
        d.on_packet(0, &f[0], &none(), f[0].arrival),
        Verdict::Drop(DropReason::WaitingForKeyframe)
    );
    let k = q.frame(0, 1, 2, true);
    let (seq, ts, switched) = fwd(d.on_packet(0, &k[0], &none(), k[0].arrival));
    assert!(switched);
    assert_eq!(seq, last.0.wrapping_add(1));
    // 133 ms later on the wall clock (at 90 kHz).
    assert_eq!(ts.wrapping_sub(last.1), 133 * 90);
    let (seq2, ts2, _) = fwd(d.on_packet(0, &k[1], &none(), k[1].arrival));
    assert_eq!((seq2, ts2), (seq.wrapping_add(1), ts));
}

#[test]
fn mid_frame_switch_skips_one_sequence_number() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    d.set_sender_report(1, p.sr(1));
    d.set_target_layer(Some(0));
    let f0 = p.frame(0, 0, 2, true);
    let (s0, _, _) = fwd(d.on_packet(0, &f0[0], &none(), p.start));
    fwd(d.on_packet(0, &f0[1], &none(), p.start));
    // Half of frame 1 on layer 0 (no marker yet), then layer 1's keyframe.
    let f1 = p.frame(0, 1, 2, false);
    let (s1, _, _) = fwd(d.on_packet(0, &f1[0], &none(), p.start));
    assert_eq!(s1, s0.wrapping_add(2));
    d.set_target_layer(Some(1));
    let k = p.frame(1, 2, 2, true);
    let (sk, _, sw) = fwd(d.on_packet(1, &k[0], &none(), p.start));
    assert!(sw);
    assert_eq!(
        sk,
        s1.wrapping_add(2),
        "one number skipped for the incomplete frame"
    );
    // The rest of layer 0's frame 1 is now a straggler.
    assert_eq!(
        d.on_packet(0, &f1[1], &none(), p.start),
        Verdict::Drop(DropReason::NotCurrentLayer)
    );
}

#[test]
fn no_delta_of_new_layer_before_its_keyframe_and_pli_throttled() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    d.set_sender_report(2, p.sr(2));
    d.set_target_layer(Some(0));
    assert_eq!(d.keyframe_wanted(p.start), Some(0));
    for m in p.frame(0, 0, 2, true) {
        fwd(d.on_packet(0, &m, &none(), p.start));
    }
    assert_eq!(d.keyframe_wanted(p.start), None);
    d.set_target_layer(Some(2));
    let t0 = p.start + Duration::from_secs(10);
    assert_eq!(d.keyframe_wanted(t0), Some(2));
    assert_eq!(d.keyframe_wanted(t0 + Duration::from_millis(499)), None);
    for f in 1..20 {
        for m in p.frame(2, f, 2, false) {
            assert_eq!(
                d.on_packet(2, &m, &none(), t0),
                Verdict::Drop(DropReason::WaitingForKeyframe)
            );
        }
        // The old layer keeps flowing meanwhile.
        for m in p.frame(0, f, 2, false) {
            fwd(d.on_packet(0, &m, &none(), t0));
        }
    }
    assert_eq!(d.current_layer(), Some(0));
    assert_eq!(d.keyframe_wanted(t0 + Duration::from_millis(500)), Some(2));
    let k = p.frame(2, 20, 2, true);
    assert!(fwd(d.on_packet(2, &k[0], &none(), t0)).2);
    assert_eq!(d.current_layer(), Some(2));
    assert_eq!(d.keyframe_wanted(t0 + Duration::from_secs(5)), None);
}

#[test]
fn layer_without_sr_not_selected_until_its_sr() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    // No SRs at all: the first layer becomes the reference anyway.
    d.set_target_layer(Some(0));
    for m in p.frame(0, 0, 2, true) {
        fwd(d.on_packet(0, &m, &none(), p.start));
    }
    d.set_target_layer(Some(1));
    assert!(!d.can_switch_to(1));
    assert_eq!(d.keyframe_wanted(p.start), None);
    let k = p.frame(1, 1, 2, true);
    assert_eq!(
        d.on_packet(1, &k[0], &none(), p.start),
        Verdict::Drop(DropReason::NoSenderReport)
    );
    assert_eq!(d.current_layer(), Some(0));
    // The new layer's SR alone is not enough: the reference has none.
    d.set_sender_report(1, p.sr(1));
    assert!(!d.can_switch_to(1));
    d.set_sender_report(0, p.sr(0));
    assert!(d.can_switch_to(1));
    assert_eq!(d.keyframe_wanted(p.start), Some(1));
    let mut last_ts = 0;
    for m in p.frame(0, 1, 2, false) {
        last_ts = fwd(d.on_packet(0, &m, &none(), p.start)).1;
    }
    let k = p.frame(1, 2, 2, true);
    let (_, ts, sw) = fwd(d.on_packet(1, &k[0], &none(), p.start));
    assert!(sw);
    assert_eq!(ts, last_ts.wrapping_add(FRAME));
}

#[test]
fn keyframe_ts_not_after_last_is_bumped() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    // Layer 1's SR claims it runs 10 frames behind.
    let mut sr1 = p.sr(1);
    sr1.rtp_ts = sr1.rtp_ts.wrapping_add(10 * FRAME);
    d.set_sender_report(1, sr1);
    d.set_target_layer(Some(0));
    let mut last = 0;
    for f in 0..3 {
        for m in p.frame(0, f, 1, f == 0) {
            last = fwd(d.on_packet(0, &m, &none(), p.start)).1;
        }
    }
    d.set_target_layer(Some(1));
    let k = p.frame(1, 3, 1, true);
    let (_, ts, _) = fwd(d.on_packet(1, &k[0], &none(), p.start));
    assert_eq!(ts, last.wrapping_add(1));
    let next = p.frame(1, 4, 1, false);
    assert_eq!(
        fwd(d.on_packet(1, &next[0], &none(), p.start)).1,
        ts + FRAME
    );
}

#[test]
fn reordering_across_switch_drops_stragglers() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    d.set_sender_report(1, p.sr(1));
    d.set_target_layer(Some(0));
    for m in p.frame(0, 0, 2, true) {
        fwd(d.on_packet(0, &m, &none(), p.start));
    }
    d.set_target_layer(Some(1));
    let before = p.frame(1, 0, 2, false);
    let key = p.frame(1, 1, 2, true);
    let old = p.frame(0, 1, 2, false);
    // The keyframe overtakes the new layer's earlier delta frame.
    let (sk, _, _) = fwd(d.on_packet(1, &key[0], &none(), p.start));
    for m in &before {
        assert_eq!(
            d.on_packet(1, m, &none(), p.start),
            Verdict::Drop(DropReason::BeforeSwitch)
        );
    }
    for m in &old {
        assert_eq!(
            d.on_packet(0, m, &none(), p.start),
            Verdict::Drop(DropReason::NotCurrentLayer)
        );
    }
    assert_eq!(
        fwd(d.on_packet(1, &key[1], &none(), p.start)).0,
        sk.wrapping_add(1)
    );
}

#[test]
fn padding_and_late_packets_keep_numbering() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let ms = p.frame(0, 0, 6, true);
    let mut pad = ms[2];
    pad.payload_len = 0;
    let (s0, ..) = fwd(d.on_packet(0, &ms[0], &none(), p.start));
    // ms[1] is late; padding (ms[2] slot) filtered; ms[3] forwarded.
    assert_eq!(
        d.on_packet(0, &pad, &none(), p.start),
        Verdict::Drop(DropReason::Padding)
    );
    let (s3, ..) = fwd(d.on_packet(0, &ms[3], &none(), p.start));
    assert_eq!(s3, s0.wrapping_add(2));
    // The late packet gets the number reserved for it, before the padding's removal.
    let (s1, ..) = fwd(d.on_packet(0, &ms[1], &none(), p.start));
    assert_eq!(s1, s0.wrapping_add(1));
    let (s4, ..) = fwd(d.on_packet(0, &ms[4], &none(), p.start));
    assert_eq!(s4, s3.wrapping_add(1));
}

#[test]
fn late_packet_beyond_drop_history_is_dropped() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let ms = p.frame(0, 0, 3 + DROP_HISTORY + 1, true);
    fwd(d.on_packet(0, &ms[0], &none(), p.start));
    for m in &ms[2..3 + DROP_HISTORY] {
        let mut pad = *m;
        pad.payload_len = 0;
        assert!(matches!(
            d.on_packet(0, &pad, &none(), p.start),
            Verdict::Drop(_)
        ));
    }
    assert_eq!(
        d.on_packet(0, &ms[1], &none(), p.start),
        Verdict::Drop(DropReason::TooLate)
    );
}

/// A VP8 packet: 15-bit PictureID, TL0PICIDX, TID/Y; one packet per picture.
fn vp8_payload(pid: u16, tl0: u8, tid: u8, y: bool, key: bool) -> Vec<u8> {
    vec![
        0x90,
        0xE0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        tl0,
        tid << 6 | if y { 0x20 } else { 0 },
        if key { 0x00 } else { 0x01 },
    ]
}

struct Vp8Layer {
    seq: u64,
    pid: u16,
    tl0: u8,
    ts: u32,
    n: u32,
}

impl Vp8Layer {
    /// Next picture in an L1T3 pattern (TID 0, 2, 1, 2), Y set on TID 1/2 after TID 0.
    fn next(&mut self, key: bool, now: Instant) -> (PacketMeta, PayloadFacts) {
        let tid = [0u8, 2, 1, 2][(self.n % 4) as usize];
        if tid == 0 && self.n > 0 {
            self.tl0 = self.tl0.wrapping_add(1);
        }
        let y = tid > 0 && self.n % 4 != 3;
        let payload = vp8_payload(self.pid, self.tl0, tid, y, key);
        let facts = PayloadFacts::Vp8(parse_vp8(&payload).unwrap());
        let mut m = PacketMeta::new(self.seq, self.ts, true, 12, payload.len() as u16, now);
        facts.fill_meta(&mut m);
        self.seq += 1;
        self.pid = (self.pid + 1) & PID_MASK;
        self.ts = self.ts.wrapping_add(FRAME);
        self.n += 1;
        (m, facts)
    }
}

#[test]
fn vp8_tl0_only_gives_contiguous_picture_ids_and_tl0_across_switch() {
    let now = Instant::now();
    let mut l0 = Vp8Layer {
        seq: 10,
        pid: 32_760,
        tl0: 254,
        ts: 0,
        n: 0,
    };
    let mut l1 = Vp8Layer {
        seq: 900,
        pid: 100,
        tl0: 7,
        ts: 0,
        n: 0,
    };
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, SrClock { rtp_ts: 0, ntp: 0 });
    d.set_sender_report(1, SrClock { rtp_ts: 0, ntp: 0 });
    d.set_target_layer(Some(0));
    d.set_target_max_tid(0);
    let mut out = Vec::new();
    for i in 0..40 {
        if i == 20 {
            d.set_target_layer(Some(1));
        }
        let (m, f) = l0.next(i == 0, now);
        let (m1, f1) = l1.next(i == 24, now);
        for (layer, m, f) in [(0u8, m, f), (1u8, m1, f1)] {
            if let Verdict::Forward { seq, vp8, .. } = d.on_packet(layer, &m, &f, now) {
                let v = vp8.unwrap();
                out.push((seq, v.picture_id.unwrap(), v.tl0picidx.unwrap(), m.tid));
            }
        }
    }
    assert!(out.len() >= 10);
    assert_eq!(d.current_layer(), Some(1));
    for w in out.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1), "seq {w:?}");
        assert_eq!(w[1].1, (w[0].1 + 1) & PID_MASK, "picture id {w:?}");
        assert_eq!(w[1].2, w[0].2.wrapping_add(1), "tl0picidx {w:?}");
        assert_eq!(w[1].3, Some(0));
    }
}

#[test]
fn vp8_temporal_up_switch_only_at_sync_point() {
    let now = Instant::now();
    let mut l0 = Vp8Layer {
        seq: 10,
        pid: 5,
        tl0: 0,
        ts: 0,
        n: 0,
    };
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    d.set_target_max_tid(0);
    // Pictures 0..=3: TID 0, 2, 1, 2 at TL0 only.
    let mut tids = Vec::new();
    for i in 0..4 {
        let (m, f) = l0.next(i == 0, now);
        if matches!(d.on_packet(0, &m, &f, now), Verdict::Forward { .. }) {
            tids.push(m.tid.unwrap());
        }
    }
    assert_eq!(tids, [0]);
    d.set_target_max_tid(2);
    assert_eq!(d.current_max_tid(), 0);
    // Picture 4 is TID 0, picture 5 TID 2 with Y: the up-switch happens there.
    tids.clear();
    for _ in 4..12 {
        let (m, f) = l0.next(false, now);
        if matches!(d.on_packet(0, &m, &f, now), Verdict::Forward { .. }) {
            tids.push(m.tid.unwrap());
        }
    }
    assert_eq!(tids, [0, 2, 1, 2, 0, 2, 1, 2]);
    assert_eq!(d.current_max_tid(), 2);
    // Lowering is immediate.
    d.set_target_max_tid(1);
    let (m, f) = l0.next(false, now);
    assert_eq!(m.tid, Some(0));
    fwd(d.on_packet(0, &m, &f, now));
    let (m, f) = l0.next(false, now);
    assert_eq!(
        d.on_packet(0, &m, &f, now),
        Verdict::Drop(DropReason::TemporalLayer)
    );
}

#[test]
fn temporal_up_switch_waits_for_y() {
    let now = Instant::now();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    d.set_target_max_tid(0);
    let mk = |seq: u64, pid: u16, tid: u8, y: bool, key: bool| {
        let payload = vp8_payload(pid, 0, tid, y, key);
        let f = PayloadFacts::Vp8(parse_vp8(&payload).unwrap());
        let mut m = PacketMeta::new(seq, u32::from(pid) * FRAME, true, 12, 7, now);
        f.fill_meta(&mut m);
        (m, f)
    };
    let (m, f) = mk(1, 1, 0, false, true);
    fwd(d.on_packet(0, &m, &f, now));
    d.set_target_max_tid(1);
    let (m, f) = mk(2, 2, 1, false, false);
    assert_eq!(
        d.on_packet(0, &m, &f, now),
        Verdict::Drop(DropReason::TemporalLayer)
    );
    let (m, f) = mk(3, 3, 1, true, false);
    let Verdict::Forward { seq, vp8, .. } = d.on_packet(0, &m, &f, now) else {
        panic!("Y=1 must switch up");
    };
    assert_eq!(seq, 2);
    // Picture 2 was dropped: picture 3 goes out as 2.
    assert_eq!(vp8.unwrap().picture_id, Some(2));
}

#[test]
fn h264_sps_in_stap_a_is_a_switch_point() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    d.set_sender_report(1, p.sr(1));
    d.set_target_layer(Some(0));
    let stap = [0x78, 0, 2, 0x67, 1, 0, 2, 0x68, 2, 0, 2, 0x65, 3];
    let idr_only = [0x65, 1, 2];
    for m in p.frame(0, 0, 1, true) {
        fwd(d.on_packet(0, &m, &none(), p.start));
    }
    d.set_target_layer(Some(1));
    // An IDR without SPS is not a switch point.
    let f = PayloadFacts::H264(parse_h264(&idr_only).unwrap());
    let mut m = p.frame(1, 1, 1, false)[0];
    f.fill_meta(&mut m);
    assert_eq!(
        d.on_packet(1, &m, &f, p.start),
        Verdict::Drop(DropReason::WaitingForKeyframe)
    );
    let f = PayloadFacts::H264(parse_h264(&stap).unwrap());
    let mut m = p.frame(1, 2, 1, false)[0];
    f.fill_meta(&mut m);
    assert!(fwd(d.on_packet(1, &m, &f, p.start)).2);
    assert_eq!(d.current_layer(), Some(1));
}

#[test]
fn nack_lookup_after_1000_packets() {
    let mut p = Publisher::new();
    let mut d = DownTrack::new(CLOCK);
    d.set_sender_report(0, p.sr(0));
    d.set_sender_report(2, p.sr(2));
    d.set_target_layer(Some(0));
    let mut sent = Vec::new();
    for f in 0..500u32 {
        if f == 250 {
            d.set_target_layer(Some(2));
        }
        for layer in [2usize, 0] {
            for m in p.frame(layer, f, 2, f.is_multiple_of(10)) {
                if let Verdict::Forward { seq, ts, .. } =
                    d.on_packet(layer as u8, &m, &none(), p.start)
                {
                    sent.push((seq, layer as u8, m.ext_seq, ts));
                }
            }
        }
    }
    assert_eq!(sent.len(), 1000);
    // Layer 2 crossed 65536 in the middle: the extended number is rebuilt.
    for &(seq, layer, src, ts) in &sent[1000 - NACK_RING..] {
        let e = d.nack_lookup(seq).unwrap();
        assert_eq!(
            (e.out_seq, e.layer, e.src_ext_seq, e.ts),
            (seq, layer, src, ts)
        );
    }
    assert!(d.nack_lookup(sent[1000 - NACK_RING - 1].0).is_none());
    assert!(d.nack_lookup(sent[0].0).is_none());
    assert!(sent.iter().any(|s| s.1 == 0) && sent.iter().any(|s| s.2 > 65_536));
}

#[test]
fn nack_resend_once_per_rtt() {
    let now = Instant::now();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let mut m = PacketMeta::new(5, 0, true, 12, 100, now);
    m.keyframe = true;
    let (seq, ..) = fwd(d.on_packet(0, &m, &none(), now));
    let rtt = Duration::from_millis(100);
    assert!(d.nack_resend(seq, now, rtt).is_some());
    assert!(
        d.nack_resend(seq, now + Duration::from_millis(99), rtt)
            .is_none()
    );
    assert!(
        d.nack_resend(seq, now + Duration::from_millis(100), rtt)
            .is_some()
    );
    assert!(d.nack_resend(seq.wrapping_add(1), now, rtt).is_none());
}

#[test]
fn nack_entry_carries_vp8_rewrite() {
    let now = Instant::now();
    let mut l0 = Vp8Layer {
        seq: 10,
        pid: 300,
        tl0: 9,
        ts: 0,
        n: 0,
    };
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let (m, f) = l0.next(true, now);
    let Verdict::Forward { seq, vp8, .. } = d.on_packet(0, &m, &f, now) else {
        panic!()
    };
    assert_eq!(d.nack_lookup(seq).unwrap().vp8, vp8);
    assert_eq!(vp8.unwrap().picture_id, Some(300));
}

proptest::proptest! {
    /// Whatever the layers, keyframes, padding, temporal ids and target changes, with
    /// in-order input the output sequence advances by exactly one per forwarded
    /// packet (two after a switch that followed an incomplete frame) and timestamps
    /// never go back.
    #[test]
    fn output_is_one_gapless_stream(
        events in proptest::collection::vec(
            (0u8..4, proptest::bool::weighted(0.15), 0u8..10, 0u8..3, proptest::bool::ANY),
            1..400,
        )
    ) {
        let now = Instant::now();
        let mut d = DownTrack::new(CLOCK);
        let bases = [5u32, 3_000_000_000, 77];
        let mut seqs = [10u64, 40_000, 65_530];
        for (l, b) in bases.iter().enumerate() {
            d.set_sender_report(l as u8, SrClock { rtp_ts: *b, ntp: 5 << 32 });
        }
        d.set_target_layer(Some(0));
        d.set_target_max_tid(1);
        let mut last: Option<(u16, u32, bool)> = None;
        for (i, (layer, key, kind, tid, marker)) in events.into_iter().enumerate() {
            if layer == 3 {
                d.set_target_layer(Some(kind % 3));
                d.set_target_max_tid(tid);
                continue;
            }
            let l = usize::from(layer);
            let ts = bases[l].wrapping_add(i as u32 * 100);
            let mut m = PacketMeta::new(seqs[l], ts, marker, 12, if kind == 0 { 0 } else { 100 }, now);
            seqs[l] += 1;
            m.keyframe = key;
            m.tid = Some(tid);
            m.layer_sync = kind > 5;
            if let Verdict::Forward { seq, ts, switched, .. } = d.on_packet(layer, &m, &none(), now) {
                if let Some((ls, lts, lmarker)) = last {
                    let step = if switched && !lmarker { 2 } else { 1 };
                    proptest::prop_assert_eq!(seq, ls.wrapping_add(step));
                    proptest::prop_assert!(ts == lts || ts_after(ts, lts));
                }
                last = Some((seq, ts, marker));
            }
        }
    }
}

proptest::proptest! {
    /// With reordered input on one layer, forwarded packets keep the source order in
    /// their output sequence numbers (strictly increasing with the source number), so
    /// no two packets ever share an output number.
    #[test]
    fn reordered_input_maps_monotonically(
        kinds in proptest::collection::vec(0u8..8, 2..300),
        swaps in proptest::collection::vec((0usize..300, 1usize..4), 0..60),
    ) {
        let now = Instant::now();
        let mut d = DownTrack::new(CLOCK);
        d.set_target_layer(Some(0));
        d.set_target_max_tid(0);
        let mut pkts: Vec<PacketMeta> = kinds
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                // kind 0: padding, 1: TID 1 (filtered), else TID 0.
                let mut m = PacketMeta::new(100 + i as u64, i as u32, true, 12, if k == 0 { 0 } else { 50 }, now);
                m.tid = Some(u8::from(k == 1));
                m
            })
            .collect();
        pkts[0].keyframe = true;
        pkts[0].payload_len = 50;
        pkts[0].tid = Some(0);
        for (at, dist) in swaps {
            // Never move anything before the keyframe.
            let a = 1 + at % (pkts.len() - 1);
            let b = (a + dist).min(pkts.len() - 1);
            pkts.swap(a, b);
        }
        let mut sent: Vec<(u64, u16)> = Vec::new();
        for m in &pkts {
            if let Verdict::Forward { seq, .. } = d.on_packet(0, m, &none(), now) {
                sent.push((m.ext_seq, seq));
            }
        }
        sent.sort();
        for w in sent.windows(2) {
            let gap = w[1].1.wrapping_sub(w[0].1);
            proptest::prop_assert!(gap >= 1 && gap <= (w[1].0 - w[0].0) as u16, "{:?}", w);
        }
    }
}

#[test]
fn stream_starting_at_sequence_zero() {
    let now = Instant::now();
    let mut d = DownTrack::new(CLOCK);
    d.set_target_layer(Some(0));
    let mut m = PacketMeta::new(0, 0, false, 12, 100, now);
    m.keyframe = true;
    assert_eq!(fwd(d.on_packet(0, &m, &none(), now)).0, 0);
    // Filtering after it must shift later packets (it is in order, not late).
    let mut pad = PacketMeta::new(1, 0, false, 12, 0, now);
    pad.keyframe = false;
    assert_eq!(
        d.on_packet(0, &pad, &none(), now),
        Verdict::Drop(DropReason::Padding)
    );
    let m2 = PacketMeta::new(2, 0, true, 12, 100, now);
    assert_eq!(fwd(d.on_packet(0, &m2, &none(), now)).0, 1);
}

#[test]
fn pause_and_invalid_layer() {
    let now = Instant::now();
    let mut d = DownTrack::new(CLOCK);
    let mut m = PacketMeta::new(5, 0, true, 12, 100, now);
    m.keyframe = true;
    assert_eq!(
        d.on_packet(0, &m, &none(), now),
        Verdict::Drop(DropReason::Paused)
    );
    assert_eq!(
        d.on_packet(3, &m, &none(), now),
        Verdict::Drop(DropReason::InvalidLayer)
    );
    d.set_target_layer(Some(0));
    let (s, ..) = fwd(d.on_packet(0, &m, &none(), now));
    d.set_target_layer(None);
    m.ext_seq = 6;
    m.keyframe = false;
    assert_eq!(
        d.on_packet(0, &m, &none(), now),
        Verdict::Drop(DropReason::Paused)
    );
    // Resuming waits for a keyframe, then continues the numbering.
    d.set_target_layer(Some(0));
    m.ext_seq = 7;
    assert_eq!(
        d.on_packet(0, &m, &none(), now),
        Verdict::Drop(DropReason::WaitingForKeyframe)
    );
    m.ext_seq = 8;
    m.keyframe = true;
    assert_eq!(fwd(d.on_packet(0, &m, &none(), now)).0, s.wrapping_add(1));
    d.set_target_layer(Some(9));
    assert_eq!(d.target_layer(), Some(2));
}

/// A leg's NACK map is sized to its publisher's packet cache (an audio track's cache
/// keeps 128 packets: a map of 512 entries would remember 384 packets nobody can
/// resend, 6 KiB per audio leg): the last `entries` numbers are found, older ones not.
#[test]
fn a_nack_map_sized_to_the_cache_remembers_exactly_that_many_packets() {
    assert_eq!(DownTrack::with_nack_entries(CLOCK, 100).nack_entries(), 128);
    assert_eq!(DownTrack::with_nack_entries(CLOCK, 1).nack_entries(), 16);
    assert_eq!(
        DownTrack::with_nack_entries(CLOCK, 1 << 20).nack_entries(),
        NACK_RING
    );
    let mut p = Publisher::new();
    let mut d = DownTrack::with_nack_entries(CLOCK, 128);
    d.set_sender_report(0, p.sr(0));
    d.set_target_layer(Some(0));
    let mut sent = Vec::new();
    for f in 0..300u32 {
        for m in p.frame(0, f, 1, f.is_multiple_of(10)) {
            if let Verdict::Forward { seq, .. } = d.on_packet(0, &m, &none(), p.start) {
                sent.push((seq, m.ext_seq));
            }
        }
    }
    assert_eq!(sent.len(), 300);
    for &(seq, src) in &sent[300 - 128..] {
        assert_eq!(d.nack_lookup(seq).map(|e| e.src_ext_seq), Some(src));
    }
    assert!(d.nack_lookup(sent[300 - 129].0).is_none());
}

/// A leg whose subscriber did not negotiate NACK (Opus in every browser) keeps no map:
/// it forwards as usual, holds no slot and answers no NACK.
#[test]
fn a_leg_without_negotiated_nack_keeps_no_nack_map() {
    let mut p = Publisher::new();
    let mut d = DownTrack::with_nack_entries(CLOCK, 0);
    assert_eq!(d.nack_entries(), 0);
    d.set_sender_report(0, p.sr(0));
    d.set_target_layer(Some(0));
    let mut sent = Vec::new();
    for f in 0..40u32 {
        for m in p.frame(0, f, 1, f.is_multiple_of(10)) {
            if let Verdict::Forward { seq, .. } = d.on_packet(0, &m, &none(), p.start) {
                sent.push(seq);
            }
        }
    }
    assert_eq!(sent.len(), 40);
    for &seq in &sent {
        assert!(d.nack_lookup(seq).is_none());
        assert!(
            d.nack_resend(seq, p.start, Duration::from_millis(50))
                .is_none()
        );
    }
}
