//! Publisher layers and subscriber allocation: the SFU model wired into the shard.
//!
//! A route (publisher track) has up to [`MAX_LAYERS`] layers. On the publisher's shard
//! each layer owns a [`PacketCache`] (allocated once, when the layer appears) and a
//! synthetic sender-report clock; on every shard that forwards the route each layer has a
//! bitrate meter and a last-seen time. A layer is identified by [`Layers::layer_of`]: the
//! one place where an RTP stream id (rid) will select the layer once rtc-core reports it;
//! until then each SSRC of the track is a layer, in order of appearance.
//!
//! Sender reports: rtc-core does not yet report the publisher's RTCP SRs, so the
//! publisher's shard derives a clock mapping per layer from packet arrival times (the
//! first packet of each frame: its RTP timestamp against its arrival, in NTP format from
//! the shard's epoch). All layers of a route are mapped on the same shard, so the
//! mapping is consistent across layers up to network jitter; the downtrack's guard keeps
//! output timestamps rising through the error.

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
use crate::sfu::{PacketCache, PacketMeta, SrClock};

/// Layers a route can have.
pub(crate) const MAX_LAYERS: usize = 3;
/// A layer not seen for this long is not offered to allocators; its slot may be taken
/// by a new SSRC.
pub(crate) const LAYER_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often every subscriber's allocator runs (besides on estimate changes).
pub(crate) const ALLOC_INTERVAL: Duration = Duration::from_millis(200);
/// Window of the per-layer bitrate meters.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Estimate used for a subscriber whose `Rtc` has reported none (no transport-wide
/// feedback negotiated): everything its preferences allow.
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
    pub sr: Option<SrClock>,
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
}

impl Layers {
    pub(crate) fn new() -> Layers {
        Layers {
            pubs: [None, None, None],
            meters: std::array::from_fn(|_| RateMeter::new(RATE_WINDOW)),
            seen: [None; MAX_LAYERS],
            reported: (0, 0),
            kf_last: [None; MAX_LAYERS],
            kf_pending: [false; MAX_LAYERS],
        }
    }

    /// The layer a packet of the publisher's stream `ssrc` belongs to. `rid_layer`: the
    /// layer its RTP stream id names (see [`rid_layer`]), when the packet carried one —
    /// this is the one place where rids select layers. Without a rid, each SSRC is a
    /// layer in order of appearance; a new SSRC takes a free slot or the slot of a layer
    /// silent for [`LAYER_TIMEOUT`]. A slot taking a new SSRC forgets its cache. `None`:
    /// no slot (a fourth live SSRC). The first appearance of a layer allocates its cache
    /// (`cache_packets` slots).
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
                l.last_ts = None;
                l.generation = l.generation.wrapping_add(1);
            }
            None => {
                *slot = Some(PubLayer {
                    ssrc,
                    cache: PacketCache::new(cache_packets, crate::sfu::cache::MIN_SLOT_SIZE),
                    sr: None,
                    last_ts: None,
                    generation: 0,
                });
            }
        }
        u8::try_from(idx).ok()
    }

    /// Publisher side: records a packet of `layer` in its cache and clock.
    /// Returns the layer's clock and stream generation.
    pub(crate) fn ingest(
        &mut self,
        layer: u8,
        packet: &[u8],
        meta: PacketMeta,
        epoch: Instant,
    ) -> (Option<SrClock>, u8) {
        let Some(Some(l)) = self.pubs.get_mut(usize::from(layer)) else {
            return (None, 0);
        };
        // Refusals (duplicates, too old, too large) only mean the NACK path cannot
        // answer for this packet.
        let _ = l.cache.insert(meta.ext_seq, packet, meta);
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
        (l.sr, l.generation)
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

/// The layer an RTP stream id names: `q`/`h`/`f` (quarter, half, full) are 0/1/2;
/// otherwise its position in the publisher's announced rids (`rids`, as negotiated).
pub(crate) fn rid_layer(rids: &[String], rid: &str) -> Option<u8> {
    match rid {
        "q" => Some(0),
        "h" => Some(1),
        "f" => Some(2),
        _ => rids
            .iter()
            .position(|r| r == rid)
            .and_then(|i| u8::try_from(i).ok()),
    }
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
    if input.kind == AllocKind::Audio {
        input.bitrates[0][0] = route.layers.meters[0].bps(now);
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
        row[0] = route.layers.meters.get(s).map_or(0, |m| m.bps(now));
    }
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
        let Session { legs, alloc, .. } = s;
        for (mid, key, _) in legs.iter() {
            let (Some(route), Some(input)) = (self.routes.get(key), alloc.input_mut(*mid)) else {
                continue;
            };
            refresh_input(input, route, now);
        }
        let estimate = s
            .estimate_override
            .or(s.estimate)
            .unwrap_or(NO_ESTIMATE_BPS);
        let report = s.alloc.update(now, estimate);
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
        assert_eq!(rid_layer(&[], "f"), Some(2));
        let rids = ["lo".to_string(), "hi".to_string()];
        assert_eq!(rid_layer(&rids, "hi"), Some(1));
        assert_eq!(rid_layer(&rids, "x"), None);
        assert_eq!(l.layer_of(Some(0), false, 99, 16, t1), Some(0));
        assert_eq!(l.ingest(0, &[0u8; 20], meta(1, 1, t1), t0).1, 1);
    }

    #[test]
    fn audio_has_one_layer_and_restarts_bump_the_generation() {
        let t0 = Instant::now();
        let mut l = Layers::new();
        assert_eq!(l.layer_of(None, true, 1, 16, t0), Some(0));
        assert_eq!(l.ingest(0, &[0u8; 20], meta(1, 960, t0), t0).1, 0);
        assert_eq!(l.layer_of(None, true, 2, 16, t0), Some(0));
        let (sr, generation) = l.ingest(0, &[0u8; 20], meta(7, 123, t0), t0);
        assert_eq!(generation, 1);
        assert_eq!(sr.map(|s| s.rtp_ts), Some(123));
        assert!(l.pubs[1].is_none());
    }
}
