//! Publisher layers and subscriber allocation: the SFU model wired into the shard.
//!
//! A route (publisher track) has up to [`MAX_LAYERS`] layers. On the publisher's shard
//! each layer owns a [`PacketCache`] (allocated once, when the layer appears) and a
//! sender-report clock; on every shard that forwards the route each layer has a bitrate
//! meter and a last-seen time. A layer is identified by [`Layers::layer_of`]: the
//! publisher's `Rtc` binds each SSRC of a simulcast section to its RTP stream id (and
//! keeps the binding after the sender stops sending the rid extension), and
//! [`rid_layer`] turns that rid into the layer. Only streams without a rid (plain SSRC
//! simulcast, or a single stream) are placed by arrival order.
//!
//! Sender reports: on each allocation tick ([`ALLOC_INTERVAL`]) the publisher's shard
//! asks the publisher's `Rtc` for the last RTCP sender report of every layer's SSRC
//! ([`Rtc::sender_report`](rtc_core::Rtc::sender_report)), and records it when its
//! arrival instant changed — no per-packet cost. The clock travels with every packet
//! ([`PktInfo::sr`]) to the downtracks, which map layers onto each other through it.
//!
//! Fallback: a publisher that never sends SRs gets a clock derived from packet arrival
//! times (the first packet of each frame: its RTP timestamp against its arrival, in NTP
//! format from the shard's epoch). All layers of a route are mapped on the same shard,
//! so that mapping is consistent across layers up to network jitter. The two kinds of
//! clock are never mixed within a route (their NTP bases differ): a route uses arrival
//! clocks until every live layer has had a real SR, then real SRs only. A layer whose stream restarts after that has no clock until
//! its first SR, so a downtrack cannot switch to it before (unless it is the timestamp
//! reference). The downtrack's guard keeps output timestamps rising through any error.

use std::time::{Duration, Instant};

use rtc_core::media::MediaKind;

use super::{Route, Session, Shard};
use crate::forward::FwdExt;
use crate::sfu::allocator::{
    DowntrackInput, LayerSet, MediaKind as AllocKind, PauseReason, Target,
};
use crate::sfu::codec::VideoCodec;
use crate::sfu::downtrack::MAX_TID;
use crate::sfu::rate::RateMeter;
use crate::sfu::{CacheRefused, PacketCache, PacketMeta, SrClock};

/// Layers a route can have.
pub(crate) const MAX_LAYERS: usize = 3;
/// A layer not seen for this long is not offered to allocators; its slot may be taken
/// by a new SSRC.
pub(crate) const LAYER_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often every subscriber's allocator runs (besides on estimate changes).
pub(crate) const ALLOC_INTERVAL: Duration = Duration::from_millis(200);
/// Byte ring of a layer cache per packet it indexes: video packets are mostly full
/// (≈ 1200 bytes); audio (Opus at up to 128 kbit/s in 20 ms frames) stays below 320.
const VIDEO_BYTES: usize = 1200;
const AUDIO_BYTES: usize = 320;
/// Window of the per-layer bitrate meters.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// A layer's meter counts as a measurement once it is this old; before, the allocator
/// prices the layer by its defaults (the first packets of a layer whose frames span
/// several packets would read as a fraction of its rate and lure every subscriber up).
const RATE_MATURE: Duration = Duration::from_millis(500);
/// Estimate used for a subscriber whose `Rtc` has none (transport-wide congestion
/// control not negotiated): everything its preferences allow.
const NO_ESTIMATE_BPS: u64 = 1_000_000_000;

/// What the publisher's shard learned about one packet; travels with it to every shard
/// that forwards it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PktInfo {
    /// The layer index.
    pub layer: u8,
    /// Layers of the route alive when the packet arrived.
    pub live_layers: u8,
    /// How to parse the payload.
    pub codec: VideoCodec,
    /// End-to-end header extensions to forward.
    pub ext: FwdExt,
    /// The layer's stream generation: a change means a new source stream in that slot
    /// (downtracks restart their source, keeping their output continuous).
    pub generation: u8,
    /// Sequence number, timestamp, marker and codec facts.
    pub meta: PacketMeta,
    /// The layer's (synthetic) sender-report clock.
    pub sr: Option<SrClock>,
}

/// The publisher-side state of one layer (on the publisher's shard only).
pub(crate) struct PubLayer {
    pub ssrc: u32,
    pub cache: PacketCache,
    /// Arrival-time clock (the fallback).
    pub sr: Option<SrClock>,
    /// The last real sender report and when it arrived.
    pub report: Option<(SrClock, Instant)>,
    last_ts: Option<u32>,
    /// Bumped each time the slot takes a new SSRC (a restarted stream).
    pub generation: u8,
}

/// A route's layers.
pub(crate) struct Layers {
    /// Publisher side: index = layer (on the publisher's shard).
    pub pubs: [Option<PubLayer>; MAX_LAYERS],
    /// Every shard: bitrate per layer.
    pub meters: [RateMeter; MAX_LAYERS],
    /// Every shard: when each layer last carried a packet.
    pub seen: [Option<Instant>; MAX_LAYERS],
    /// Last (live, selected) bit sets reported for this route by this shard.
    pub reported: (u8, u8),
    /// Keyframe requests per layer: last sent, and one pending (coalesced).
    pub kf_last: [Option<Instant>; MAX_LAYERS],
    pub kf_pending: [bool; MAX_LAYERS],
    /// The route's clocks come from real sender reports (see the module docs).
    real_sr: bool,
}

impl Layers {
    /// Each layer's bitrate over the last [`RATE_WINDOW`] (`None`: no packet in it).
    pub(crate) fn layer_bps(&self, now: Instant) -> [Option<u64>; MAX_LAYERS] {
        std::array::from_fn(|i| {
            let live = self.seen[i].is_some_and(|t| now.saturating_duration_since(t) < RATE_WINDOW);
            live.then(|| self.meters[i].bps(now))
        })
    }

    pub(crate) fn new() -> Layers {
        Layers {
            pubs: [None, None, None],
            meters: std::array::from_fn(|_| RateMeter::new(RATE_WINDOW)),
            seen: [None; MAX_LAYERS],
            reported: (0, 0),
            kf_last: [None; MAX_LAYERS],
            kf_pending: [false; MAX_LAYERS],
            real_sr: false,
        }
    }

    /// Whether the route's layer clocks come from the publisher's sender reports (else
    /// from arrival times).
    #[cfg(test)]
    pub(crate) fn uses_reports(&self) -> bool {
        self.real_sr
    }

    /// Publisher side, once per allocation tick: the SSRC of each layer, to look its
    /// sender report up.
    pub(crate) fn ssrcs(&self) -> [Option<u32>; MAX_LAYERS] {
        std::array::from_fn(|i| self.pubs.get(i).and_then(Option::as_ref).map(|l| l.ssrc))
    }

    /// Publisher side: the last sender report of `layer`'s SSRC (`ntp`, `rtp_ts`,
    /// arrived at `received`). Returns whether it is new. Once every live layer has had
    /// one, the route switches to report clocks for good.
    pub(crate) fn on_sender_report(
        &mut self,
        layer: u8,
        sr: SrClock,
        received: Instant,
        now: Instant,
    ) -> bool {
        let Some(Some(l)) = self.pubs.get_mut(usize::from(layer)) else {
            return false;
        };
        if l.report.is_some_and(|(_, at)| at == received) {
            return false;
        }
        l.report = Some((sr, received));
        if !self.real_sr {
            let live = self.live(now);
            self.real_sr = self.pubs.iter().enumerate().all(|(i, p)| match p {
                Some(p) => p.report.is_some() || !live.contains(i as u8),
                None => true,
            });
        }
        true
    }

    /// The layer a packet of the publisher's stream `ssrc` belongs to. `rid_layer`: the
    /// layer its RTP stream id names (see [`rid_layer`]), when the publisher's `Rtc`
    /// bound the SSRC to a rid — whether or not this packet carried the rid extension.
    /// This is the one place where rids select layers. Without a rid, each SSRC is a
    /// layer in order of appearance; a new SSRC takes a free slot or the slot of a layer
    /// silent for [`LAYER_TIMEOUT`]. A slot taking a new SSRC forgets its cache. `None`:
    /// no slot (a fourth live SSRC). The first appearance of a layer allocates its cache
    /// (`cache_packets` packets in a byte ring of [`VIDEO_BYTES`] or [`AUDIO_BYTES`] per
    /// packet).
    ///
    /// `single`: the track has one layer (audio): every SSRC is layer 0, a new one
    /// replacing the old (a restarted stream).
    pub(crate) fn layer_of(
        &mut self,
        rid_layer: Option<u8>,
        single: bool,
        ssrc: u32,
        cache_packets: usize,
        now: Instant,
    ) -> Option<u8> {
        let idx = match rid_layer {
            _ if single => 0,
            Some(i) if usize::from(i) < MAX_LAYERS => usize::from(i),
            _ => {
                if let Some(i) = self
                    .pubs
                    .iter()
                    .position(|l| l.as_ref().is_some_and(|l| l.ssrc == ssrc))
                {
                    return u8::try_from(i).ok();
                }
                match self.pubs.iter().position(Option::is_none) {
                    Some(i) => i,
                    None => (0..MAX_LAYERS).find(|&i| {
                        self.seen
                            .get(i)
                            .copied()
                            .flatten()
                            .is_none_or(|t| now.saturating_duration_since(t) >= LAYER_TIMEOUT)
                    })?,
                }
            }
        };
        let slot = self.pubs.get_mut(idx)?;
        match slot {
            Some(l) if l.ssrc == ssrc => {}
            Some(l) => {
                l.ssrc = ssrc;
                l.cache.clear();
                l.sr = None;
                l.report = None;
                l.last_ts = None;
                l.generation = l.generation.wrapping_add(1);
            }
            None => {
                *slot = Some(PubLayer {
                    ssrc,
                    cache: new_cache(cache_packets, single),
                    sr: None,
                    report: None,
                    last_ts: None,
                    generation: 0,
                });
            }
        }
        u8::try_from(idx).ok()
    }

    /// Publisher side: replaces every layer cache holding fewer than `packets` packets
    /// (rounded up as [`PacketCache::new`] does) by an empty one of that size.
    pub(crate) fn grow_caches(&mut self, packets: usize, single: bool) {
        for l in self.pubs.iter_mut().flatten() {
            if l.cache.capacity() < packets.max(1).next_power_of_two() {
                l.cache = new_cache(packets, single);
            }
        }
    }

    /// Publisher side: records a packet of `layer` in its cache and arrival clock.
    /// Returns the layer's clock (its last sender report once the route uses reports,
    /// else the arrival clock), stream generation, and whether the packet is a
    /// duplicate of one the cache holds (a publisher's RTX that repaired nothing, e.g.
    /// the redundant payloads Chromium probes its estimate with): forwarded again, it
    /// would reach every subscriber's `Rtc` with a sequence number it already sent.
    pub(crate) fn ingest(
        &mut self,
        layer: u8,
        packet: &[u8],
        meta: PacketMeta,
        epoch: Instant,
    ) -> (Option<SrClock>, u8, bool) {
        let real_sr = self.real_sr;
        let Some(Some(l)) = self.pubs.get_mut(usize::from(layer)) else {
            return (None, 0, false);
        };
        // Other refusals (too old, too large) only mean the NACK path cannot answer
        // for this packet.
        if let Err(CacheRefused::Duplicate) = l.cache.insert(meta.ext_seq, packet, meta) {
            return (None, l.generation, true);
        }
        if real_sr {
            return (l.report.map(|(sr, _)| sr), l.generation, false);
        }
        if l.last_ts != Some(meta.timestamp) {
            l.last_ts = Some(meta.timestamp);
            let since = meta.arrival.saturating_duration_since(epoch);
            // 32.32 fixed point seconds since the shard's epoch.
            let ntp =
                (since.as_secs() << 32) | ((u64::from(since.subsec_nanos()) << 32) / 1_000_000_000);
            l.sr = Some(SrClock {
                rtp_ts: meta.timestamp,
                ntp,
            });
        }
        (l.sr, l.generation, false)
    }

    /// Every shard: counts a packet of `layer`. Returns whether the layer was not live
    /// before (its subscribers' allocators should run before it is forwarded).
    pub(crate) fn count(&mut self, layer: u8, len: usize, now: Instant) -> bool {
        if let Some(m) = self.meters.get_mut(usize::from(layer)) {
            m.add(len, now);
        }
        match self.seen.get_mut(usize::from(layer)) {
            Some(s) => {
                let was_live = s.is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT);
                *s = Some(now);
                !was_live
            }
            None => false,
        }
    }

    /// Layers seen within [`LAYER_TIMEOUT`].
    pub(crate) fn live(&self, now: Instant) -> LayerSet {
        let mut set = LayerSet::EMPTY;
        for (i, s) in self.seen.iter().enumerate() {
            if s.is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT) {
                set.insert(i as u8);
            }
        }
        set
    }
}

/// A layer cache of `packets` packets, [`AUDIO_BYTES`] (`single`: an audio track) or
/// [`VIDEO_BYTES`] each.
fn new_cache(packets: usize, single: bool) -> PacketCache {
    PacketCache::new(
        packets,
        packets * if single { AUDIO_BYTES } else { VIDEO_BYTES },
    )
}

/// The layer of a packet whose SSRC the publisher's `Rtc` bound to RTP stream id `rid`
/// at position `position` of the section's announced rids (both from
/// [`RtpPacketReceived`](rtc_core::event::RtpPacketReceived)): `q`/`h`/`f` (quarter,
/// half, full) are 0/1/2 whatever their order; any other rid is its position. `None`: a
/// stream without a rid (or one past [`MAX_LAYERS`]), placed by arrival order.
pub(crate) fn rid_layer(rid: Option<&str>, position: Option<u8>) -> Option<u8> {
    let layer = match rid? {
        "q" => 0,
        "h" => 1,
        "f" => 2,
        _ => position?,
    };
    (usize::from(layer) < MAX_LAYERS).then_some(layer)
}

/// The codec facts parser for a payload type of a published section.
pub(crate) fn codec_of(pt_codec: &[(u8, VideoCodec)], pt: u8) -> VideoCodec {
    pt_codec
        .iter()
        .find(|(p, _)| *p == pt)
        .map_or(VideoCodec::Other, |(_, c)| *c)
}

/// Maps an rtc-core codec to the facts parser.
pub(crate) fn video_codec(c: &rtc_core::sdp::Codec) -> VideoCodec {
    use rtc_core::sdp::Codec;
    match c {
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::Vp9 => VideoCodec::Vp9,
        Codec::H264 => VideoCodec::H264,
        _ => VideoCodec::Other,
    }
}

/// The allocator's view of a leg on `route`.
pub(crate) fn downtrack_input(route: &Route, now: Instant) -> DowntrackInput {
    let mut input = match route.spec.kind {
        MediaKind::Audio => DowntrackInput::audio(),
        MediaKind::Video => DowntrackInput::video(LayerSet::EMPTY, 1),
    };
    refresh_input(&mut input, route, now);
    input
}

/// Updates the live layers and measured bitrates of an allocator input.
fn refresh_input(input: &mut DowntrackInput, route: &Route, now: Instant) {
    let measured = |m: &RateMeter| {
        if m.age(now) >= RATE_MATURE {
            m.bps(now)
        } else {
            0
        }
    };
    if input.kind == AllocKind::Audio {
        input.bitrates[0][0] = measured(&route.layers.meters[0]);
        input.active = route.layers.live(now).contains(0) || route.layers.seen[0].is_none();
        return;
    }
    let mut live = route.layers.live(now);
    if route.layers.seen.iter().all(Option::is_none) {
        // Nothing received yet: expect a base layer, so the first packet goes out.
        live.insert(0);
    }
    input.active = !live.is_empty();
    input.layers = live;
    for (s, row) in input.bitrates.iter_mut().enumerate() {
        row[0] = route.layers.meters.get(s).map_or(0, measured);
    }
}

/// Restricts an allocator input to one publisher layer (a pinned leg): offered while it
/// is live, else the leg counts as inactive (its downtrack keeps its target and waits).
fn pin_input(input: &mut DowntrackInput, layer: u8) {
    if input.kind != AllocKind::Video {
        return;
    }
    let live = input.layers.contains(layer);
    input.layers = if live {
        LayerSet::from_bits(1 << layer)
    } else {
        LayerSet::EMPTY
    };
    input.active = live;
}

/// Applies an allocator target to a downtrack.
pub(crate) fn apply_target(dt: &mut crate::sfu::DownTrack, target: Target, max_temporal: u8) {
    match target.layer() {
        Some(l) => {
            dt.set_target_layer(Some(l.spatial));
            // Temporal layers are not measured per layer yet: the preference caps them.
            let tid = if usize::from(max_temporal) + 1 >= crate::sfu::allocator::MAX_TEMPORAL {
                MAX_TID
            } else {
                max_temporal
            };
            dt.set_target_max_tid(tid);
        }
        // An inactive publisher sends nothing anyway; keeping the target lets its return
        // continue the stream without a switch.
        None if target == Target::Paused(PauseReason::Inactive) => {}
        None => dt.set_target_layer(None),
    }
}

impl Shard {
    /// Re-ranks the shard's audio publishers; a changed list becomes an
    /// [`EngineEvent::ActiveSpeakers`](crate::EngineEvent::ActiveSpeakers).
    pub(super) fn report_speakers(&mut self, now: Instant) {
        if !self.speakers.update(now) {
            return;
        }
        let n = self.speakers.config().max_speakers;
        let speakers = self
            .speakers
            .top(n)
            .iter()
            .map(|id| (*id, self.speakers.score(*id, now).unwrap_or(0)))
            .collect();
        let _ = self
            .ctx
            .events_tx
            .try_send(crate::EngineEvent::ActiveSpeakers {
                shard: self.ctx.index,
                speakers,
            });
    }

    /// Publisher side, once per allocation tick: records the publisher `Rtc`'s latest
    /// sender report of every layer of the routes it publishes on this shard (see the
    /// module docs). The clocks reach the downtracks with the layers' next packets.
    pub(super) fn poll_sender_reports(&mut self, now: Instant) {
        for (key, route) in &mut self.routes {
            if route.spec.pub_shard != self.ctx.index {
                continue;
            }
            let Some(Some(s)) = self.by_id.get(&key.0).and_then(|&i| self.sessions.get(i)) else {
                continue;
            };
            for (i, ssrc) in route.layers.ssrcs().into_iter().enumerate() {
                let Some(r) = ssrc.and_then(|ssrc| s.rtc.sender_report(ssrc)) else {
                    continue;
                };
                let clock = SrClock {
                    rtp_ts: r.rtp_time,
                    ntp: r.ntp,
                };
                route
                    .layers
                    .on_sender_report(i as u8, clock, r.received, now);
            }
        }
    }

    /// Runs every subscriber's allocator (see [`Shard::allocate_session`]).
    pub(super) fn allocate_all(&mut self, now: Instant) {
        for slot in 0..self.sessions.len() {
            self.allocate_session(slot, now);
        }
        // Which layers the local downtracks select, per route; changes are reported.
        for (key, route) in &mut self.routes {
            if route.spec.kind != MediaKind::Video || route.legs.is_empty() {
                continue;
            }
            let live = route.layers.live(now).bits();
            let selected = route
                .legs
                .iter()
                .filter_map(|l| l.dt.target_layer())
                .fold(0u8, |acc, l| acc | (1 << l));
            if route.layers.reported != (live, selected) {
                route.layers.reported = (live, selected);
                let _ = self
                    .ctx
                    .events_tx
                    .try_send(crate::EngineEvent::LayersSelected {
                        shard: self.ctx.index,
                        publisher: key.0,
                        mid: key.1,
                        live,
                        selected,
                    });
            }
        }
    }

    /// Refreshes the inputs of a subscriber's allocator from its legs' routes, runs it
    /// with the session's estimate and hands changed targets to the downtracks; a
    /// downtrack that now wants a keyframe asks the publisher's layer for one.
    pub(super) fn allocate_session(&mut self, slot: usize, now: Instant) {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        if s.legs.is_empty() {
            return;
        }
        let Session {
            legs, alloc, pins, ..
        } = &mut **s;
        for (mid, key, _) in legs.iter() {
            let (Some(route), Some(input)) = (self.routes.get(key), alloc.input_mut(*mid)) else {
                continue;
            };
            refresh_input(input, route, now);
            if let Some(&(_, layer)) = pins.iter().find(|(m, _)| m == mid) {
                pin_input(input, layer);
            }
        }
        let estimate = s
            .estimate_override
            .or(s.estimate)
            .or_else(|| s.rtc.bandwidth_estimate())
            .unwrap_or(NO_ESTIMATE_BPS);
        let report = s.alloc.update(now, estimate);
        super::drive::drive_rate(
            s,
            slot,
            estimate,
            &report,
            now,
            &mut self.touched,
            &mut self.doomed,
        );
        let sub = s.id;
        if report.changed {
            for (mid, target) in s.alloc.changes() {
                let Some((_, key, _)) = s.legs.iter().find(|(m, _, _)| *m == mid) else {
                    continue;
                };
                let max_t = s.alloc.input(mid).map_or(3, |i| i.preference.max_temporal);
                if let Some(leg) = self.routes.get_mut(key).and_then(|r| {
                    r.legs
                        .iter_mut()
                        .find(|l| l.sub == sub && l.params.mid == mid)
                }) {
                    apply_target(&mut leg.dt, target, max_t);
                }
            }
        }
        // Keyframes the downtracks wait for (targets new or changed, or a PLI lost).
        let n = s.legs.len();
        for i in 0..n {
            let Some(Some(s)) = self.sessions.get(slot) else {
                return;
            };
            let Some(&(mid, key, _)) = s.legs.get(i) else {
                break;
            };
            let want = self
                .routes
                .get_mut(&key)
                .and_then(|r| {
                    r.legs
                        .iter_mut()
                        .find(|l| l.sub == sub && l.params.mid == mid)
                })
                .and_then(|leg| leg.dt.keyframe_wanted(now));
            if let Some(layer) = want {
                self.keyframe_upstream(key, layer, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64, ts: u32, at: Instant) -> PacketMeta {
        PacketMeta::new(seq, ts, true, 12, 100, at)
    }

    #[test]
    fn ssrcs_become_layers_in_order_and_stale_slots_are_reused() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        for (i, ssrc) in [10u32, 11, 12].into_iter().enumerate() {
            assert_eq!(l.layer_of(None, false, ssrc, 16, t0), Some(i as u8));
            assert!(l.count(i as u8, 100, t0), "newly live");
            assert!(!l.count(i as u8, 100, t0));
        }
        assert_eq!(l.layer_of(None, false, 11, 16, t0), Some(1));
        assert_eq!(l.layer_of(None, false, 13, 16, t0), None, "no fourth layer");
        assert_eq!(l.live(t0), LayerSet::ALL);
        // Layer 1 falls silent; a new SSRC takes its slot with a new generation.
        let t1 = t0 + LAYER_TIMEOUT;
        l.count(0, 100, t1);
        l.count(2, 100, t1);
        assert_eq!(l.live(t1), LayerSet::from_bits(0b101));
        assert_eq!(l.layer_of(None, false, 13, 16, t1), Some(1));
        assert_eq!(l.ingest(1, &[0u8; 20], meta(5, 9000, t1), t0).1, 1);
        // A rid names its layer directly.
        assert_eq!(rid_layer(Some("f"), Some(0)), Some(2));
        assert_eq!(rid_layer(Some("hi"), Some(1)), Some(1));
        assert_eq!(rid_layer(Some("x"), None), None);
        assert_eq!(rid_layer(Some("x"), Some(3)), None, "past the last layer");
        assert_eq!(rid_layer(None, Some(1)), None, "no rid: arrival order");
        assert_eq!(l.layer_of(Some(0), false, 99, 16, t1), Some(0));
        assert_eq!(l.ingest(0, &[0u8; 20], meta(1, 1, t1), t0).1, 1);
    }

    #[test]
    fn rid_bound_layers_ignore_arrival_order() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        // The full layer arrives first; rids place the streams regardless.
        assert_eq!(
            l.layer_of(rid_layer(Some("f"), Some(2)), false, 30, 16, t0),
            Some(2)
        );
        assert_eq!(
            l.layer_of(rid_layer(Some("q"), Some(0)), false, 10, 16, t0),
            Some(0)
        );
        // Later packets keep the binding (the Rtc reports the rid without the extension).
        assert_eq!(
            l.layer_of(rid_layer(Some("f"), Some(2)), false, 30, 16, t0),
            Some(2)
        );
        // A stream with no rid takes the free slot.
        assert_eq!(l.layer_of(None, false, 20, 16, t0), Some(1));
        assert_eq!(l.pubs.iter().flatten().count(), 3);
    }

    fn sr(rtp_ts: u32, ntp: u64) -> SrClock {
        SrClock { rtp_ts, ntp }
    }

    #[test]
    fn sender_reports_replace_arrival_clocks_once_every_live_layer_has_one() {
        let t0 = Instant::now();
        let epoch = t0;
        let mut l = Layers::new();
        for (i, ssrc) in [10u32, 11].into_iter().enumerate() {
            let layer = l.layer_of(Some(i as u8), false, ssrc, 16, t0).unwrap();
            l.count(layer, 100, t0);
        }
        // No reports: arrival clocks.
        let at = t0 + Duration::from_secs(2);
        l.count(0, 100, at);
        l.count(1, 100, at);
        let (clock, _, _) = l.ingest(0, &[0u8; 20], meta(1, 9000, at), epoch);
        assert_eq!(clock, Some(sr(9000, 2u64 << 32)));
        assert!(!l.uses_reports());
        // One layer reported: still arrival clocks (never mixed within a route).
        assert!(l.on_sender_report(0, sr(5000, 77 << 32), at, at));
        assert!(
            !l.on_sender_report(0, sr(5000, 77 << 32), at, at),
            "same report"
        );
        assert!(!l.uses_reports());
        let (clock, _, _) = l.ingest(0, &[0u8; 20], meta(2, 12000, at), epoch);
        assert_eq!(clock.map(|c| c.ntp), Some(2u64 << 32));
        // Both reported: the reports, for every packet.
        assert!(l.on_sender_report(1, sr(100, 78 << 32), at, at));
        assert!(l.uses_reports());
        let (clock, _, _) = l.ingest(0, &[0u8; 20], meta(3, 15000, at), epoch);
        assert_eq!(clock, Some(sr(5000, 77 << 32)));
        let (clock, _, _) = l.ingest(1, &[0u8; 20], meta(1, 300, at), epoch);
        assert_eq!(clock, Some(sr(100, 78 << 32)));
        // A newer report replaces the older one.
        let later = at + Duration::from_secs(1);
        assert!(l.on_sender_report(1, sr(90_100, 79 << 32), later, later));
        let (clock, _, _) = l.ingest(1, &[0u8; 20], meta(2, 400, later), epoch);
        assert_eq!(clock, Some(sr(90_100, 79 << 32)));
        // A restarted stream has no clock until its own first report.
        assert_eq!(l.layer_of(Some(1), false, 12, 16, later), Some(1));
        let (clock, generation, _) = l.ingest(1, &[0u8; 20], meta(1, 7, later), epoch);
        assert_eq!((clock, generation), (None, 1));
    }

    #[test]
    fn a_silent_layer_does_not_hold_back_report_clocks() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        for i in 0..2u8 {
            l.layer_of(Some(i), false, 10 + u32::from(i), 16, t0);
            l.count(i, 100, t0);
        }
        // Layer 1 stopped; layer 0 keeps going and reports.
        let t1 = t0 + LAYER_TIMEOUT;
        l.count(0, 100, t1);
        assert!(l.on_sender_report(0, sr(1, 1 << 32), t1, t1));
        assert!(l.uses_reports());
        assert_eq!(l.ssrcs(), [Some(10), Some(11), None]);
    }

    #[test]
    fn a_packet_the_layer_cache_already_holds_is_a_duplicate() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        assert_eq!(l.layer_of(Some(1), false, 11, 16, t0), Some(1));
        assert!(!l.ingest(1, &[1u8; 20], meta(5, 900, t0), t0).2);
        assert!(!l.ingest(1, &[1u8; 20], meta(6, 900, t0), t0).2);
        // The publisher's redundant retransmission of 5 (after RTX unwrapping).
        assert!(l.ingest(1, &[1u8; 20], meta(5, 900, t0), t0).2);
        // A repair of a packet never received (4) is new, and forwarded.
        assert!(!l.ingest(1, &[1u8; 20], meta(4, 900, t0), t0).2);
        // Another layer keeps its own sequence space.
        assert_eq!(l.layer_of(Some(0), false, 10, 16, t0), Some(0));
        assert!(!l.ingest(0, &[1u8; 20], meta(5, 900, t0), t0).2);
    }

    #[test]
    fn audio_has_one_layer_and_restarts_bump_the_generation() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        assert_eq!(l.layer_of(None, true, 1, 16, t0), Some(0));
        assert_eq!(l.ingest(0, &[0u8; 20], meta(1, 960, t0), t0).1, 0);
        assert_eq!(l.layer_of(None, true, 2, 16, t0), Some(0));
        let (sr, generation, _) = l.ingest(0, &[0u8; 20], meta(7, 123, t0), t0);
        assert_eq!(generation, 1);
        assert_eq!(sr.map(|s| s.rtp_ts), Some(123));
        assert!(l.pubs[1].is_none());
    }
}
