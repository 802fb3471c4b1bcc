//! Forwarding: local fan-out, cross-shard batches, retransmissions from the layer caches
//! (across shards too) and keyframe requests.

use std::collections::HashMap;
use std::time::Instant;

use crossbeam_channel::TrySendError;
use rtc_core::direct::{RtpWritten, RtxOutcome};
use rtc_core::event::KeyframeRequestKind;
use rtc_core::media::MediaKind;
use rtc_core::rtp::RtpPacket;

use super::drive::{LentTransmit, transmit_lent};
use super::layers::{MAX_LAYERS, PktInfo, codec_of};
use super::{
    Batch, BatchPkt, Counters, DataMsg, Leg, Route, RouteKey, RtpAct, RtxAsk, RtxPkt, RtxTicket,
    Session, Shard, guarded, guarded_rtc, touch,
};
use crate::api::{CloseReason, EngineEvent, SessionId};
use crate::forward::{FwdExt, write_forwarded, write_forwarded_parsed};
use crate::io::IoBackend;
use crate::sfu::codec::VideoCodec;
use crate::sfu::{PacketMeta, PayloadFacts, Verdict};

/// [`forward_legs`] for the shard `$shard` (its sessions, touched and doomed lists and
/// drop counters), spelled once for every call site. A macro, not a method: the route
/// whose legs it writes is borrowed from the same shard.
macro_rules! forward_shard_legs {
    ($shard:ident, $backend:expr, $legs:expr, $packet:expr, $info:expr, $facts:expr, $now:expr) => {
        $crate::shard::forward::forward_legs(
            $legs,
            $packet,
            $info,
            $facts,
            &mut $shard.sessions,
            &mut $shard.touched,
            &mut $shard.doomed,
            &mut $shard.c,
            $crate::shard::forward::Out {
                backend: $backend,
                announced: &$shard.ctx.announced,
            },
            $now,
        )
    };
}
pub(super) use forward_shard_legs;

/// Writes the packet for every local leg of a route: each leg's downtrack decides whether
/// and with which numbering. Returns the packets written and a bit set of the layers some
/// downtrack wants a keyframe of.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_legs(
    legs: &mut [Leg],
    packet: &[u8],
    info: &PktInfo,
    facts: &PayloadFacts,
    sessions: &mut [Option<Box<Session>>],
    touched: &mut Vec<usize>,
    doomed: &mut Vec<(SessionId, CloseReason)>,
    c: &mut Counters,
    out: Out<'_>,
    now: Instant,
) -> (u64, u8) {
    let Out { backend, announced } = out;
    let mut n_fwd = 0;
    let mut kf = 0u8;
    let mut meta = info.meta;
    if info.live_layers <= 1 {
        // One layer: every packet is a switch point (as forwarding always was without
        // layers); a new leg starts at once and asks for a keyframe.
        meta.keyframe = true;
    }
    let vp8 = facts.vp8();
    // Parsed once for every leg (each leg writes its own header from it).
    let parsed = RtpPacket::parse(packet).ok();
    for leg in legs {
        let Some(Some(s)) = sessions.get_mut(leg.slot) else {
            continue;
        };
        if s.id != leg.sub {
            continue;
        }
        if let Some(g) = leg.generations.get_mut(usize::from(info.layer))
            && *g != info.generation
        {
            // The publisher restarted this layer's stream: a new source for the leg.
            *g = info.generation;
            leg.dt.restart_source();
        }
        if let Some(sr) = info.sr {
            leg.dt.set_sender_report(info.layer, sr);
        }
        let verdict = leg.dt.on_packet(info.layer, &meta, facts, now);
        if let Some(l) = leg.dt.keyframe_wanted(now) {
            kf |= 1 << l;
        }
        let Verdict::Forward {
            seq, ts, vp8: rw, ..
        } = verdict
        else {
            continue;
        };
        let rewrite = match (vp8, rw) {
            (Some(d), Some(r)) => Some((d, r)),
            _ => None,
        };
        // The leg's packet is written straight into a send buffer lent by the backend
        // and, when the subscriber's `Rtc` lets it leave at once (nothing queued ahead
        // of it, within its pacing budget), protected there and queued for the kernel
        // as it is: one copy per leg, and the session needs no drain for it. Else the
        // `Rtc` keeps a copy and the drain sends it.
        let mut n = 0usize;
        let params = &leg.params;
        let mut lent = backend.lend_send_buf();
        let res = guarded_rtc(&mut s.panic_next, &mut s.rtc, |rtc| {
            let mut api = rtc.direct_api();
            // Paced, numbered and counted at this iteration's time, not the `Rtc`'s
            // last input's.
            api.advance_time(now);
            let fill = |buf: &mut [u8]| {
                let pkt = parsed.as_ref()?;
                n = write_forwarded_parsed(
                    (packet, pkt),
                    params,
                    (seq, ts),
                    rewrite,
                    &info.ext,
                    buf,
                )
                .ok()?;
                Some(n)
            };
            match lent.as_mut() {
                Some(b) => api
                    .write_rtp_packet_in_place(b.bytes_mut(), fill)
                    .map(|w| match w {
                        RtpWritten::Nothing => Wrote::Nothing,
                        RtpWritten::Queued => Wrote::Queued,
                        RtpWritten::Sent(t) => Wrote::Sent(LentTransmit {
                            proto: t.proto,
                            source: t.source,
                            destination: t.destination,
                            len: t.contents.len(),
                        }),
                    }),
                None => api
                    .write_rtp_packet_with(fill)
                    .map(|w| if w { Wrote::Queued } else { Wrote::Nothing }),
            }
        });
        match res {
            Ok(Ok(Wrote::Nothing)) => {
                c.drops.leg_rewrite += 1;
            }
            Ok(Ok(Wrote::Sent(t))) => {
                n_fwd += 1;
                leg.packets += 1;
                leg.bytes += n as u64;
                if let Some(buf) = lent.take() {
                    c.fwd_in_place += 1;
                    transmit_lent(announced, c, backend, &t, buf, &mut s.send_hint);
                }
            }
            Ok(Ok(Wrote::Queued)) => {
                n_fwd += 1;
                leg.packets += 1;
                leg.bytes += n as u64;
                touch(s, leg.slot, touched);
            }
            Ok(Err(_)) => c.drops.leg_not_ready += 1,
            Err(()) => doomed.push((leg.sub, CloseReason::Panicked)),
        }
        if let Some(buf) = lent {
            backend.return_send_buf(buf);
        }
    }
    (n_fwd, kf)
}

/// Where [`forward_legs`] sends what leaves at once.
pub(super) struct Out<'a> {
    pub backend: &'a mut dyn IoBackend,
    /// The shard's socket addresses (`ShardCtx::announced`).
    pub announced: &'a [std::net::SocketAddr],
}

/// What writing one leg's packet did.
enum Wrote {
    Nothing,
    Queued,
    Sent(LentTransmit),
}

/// The payload bytes of a packet described by `meta`.
pub(super) fn payload_of<'a>(packet: &'a [u8], meta: &PacketMeta) -> &'a [u8] {
    let start = usize::from(meta.payload_offset);
    packet
        .get(start..start + usize::from(meta.payload_len))
        .unwrap_or(&[])
}

/// A cached source packet to retransmit, with what rewriting it for a leg needs.
pub(super) struct Source<'a> {
    pub packet: &'a [u8],
    pub meta: PacketMeta,
    pub codec: VideoCodec,
    pub ext: FwdExt,
}

/// On the publisher's shard: the packet `ext_seq` of `layer` of the route `key` from the
/// layer's cache, with its codec and forwarded extension values (from the publisher's
/// session: payload types and extension ids). `None`: no longer cached, or the publisher
/// is gone.
pub(super) fn cached_source<'a>(
    route: &'a Route,
    key: RouteKey,
    sessions: &[Option<Box<Session>>],
    by_id: &HashMap<SessionId, usize>,
    layer: u8,
    ext_seq: u64,
) -> Option<Source<'a>> {
    let (packet, meta) = route
        .layers
        .pubs
        .get(usize::from(layer))?
        .as_ref()?
        .cache
        .get(ext_seq)?;
    let p = sessions.get(*by_id.get(&key.0)?)?.as_ref()?;
    let pt = packet.get(1).map_or(0, |b| b & 0x7f);
    let codec = codec_of(&p.pt_codec, pt);
    let ext = p
        .rx_ext
        .iter()
        .find(|(m, _)| *m == key.1)
        .and_then(|(_, map)| {
            RtpPacket::parse(packet)
                .ok()
                .and_then(|r| r.extensions(map).ok())
        })
        .map(|v| FwdExt::from_values(&v, packet))
        .unwrap_or_default();
    Some(Source {
        packet,
        meta: *meta,
        codec,
        ext,
    })
}

/// The shard state a retransmission is written with.
pub(super) struct RtxOut<'a> {
    pub scratch: &'a mut [u8],
    pub c: &'a mut Counters,
    pub touched: &'a mut Vec<usize>,
    pub doomed: &'a mut Vec<(SessionId, CloseReason)>,
}

/// On the subscriber's shard: rewrites `src` for the leg `ticket` names (the subscriber
/// session in `slot`, its leg of route `key` on SSRC `ticket.ssrc`) as it went out the
/// first time, and hands it to the subscriber's `Rtc` as a retransmission. Counts it in
/// `resent` (the subscriber's pacer queued it), `resend_refused` (its pacer refused
/// it) or `resend_missed`. Returns `false` when the subscriber's `Rtc` panicked
/// (it is doomed).
#[allow(clippy::too_many_arguments)]
pub(super) fn write_resend(
    sessions: &mut [Option<Box<Session>>],
    routes: &HashMap<RouteKey, Box<Route>>,
    slot: usize,
    key: RouteKey,
    ticket: &RtxTicket,
    src: &Source<'_>,
    out: &mut RtxOut<'_>,
    now: Instant,
) -> bool {
    let Some(Some(s)) = sessions.get_mut(slot) else {
        out.c.resend_missed += 1;
        return true;
    };
    let leg = s
        .legs
        .iter()
        .find(|(_, k, ssrc)| *ssrc == ticket.ssrc && *k == key)
        .and_then(|&(sub_mid, _, _)| {
            routes
                .get(&key)?
                .legs
                .iter()
                .find(|l| l.sub == ticket.sub && l.params.mid == sub_mid)
        });
    let Some(leg) = leg.filter(|_| s.id == ticket.sub) else {
        // The leg was removed meanwhile.
        out.c.resend_missed += 1;
        return true;
    };
    let entry = &ticket.entry;
    let facts = PayloadFacts::parse(src.codec, payload_of(src.packet, &src.meta));
    let rewrite = match (facts.vp8(), entry.vp8) {
        (Some(d), Some(r)) => Some((d, r)),
        _ => None,
    };
    let Ok(n) = write_forwarded(
        src.packet,
        &leg.params,
        entry.out_seq,
        entry.ts,
        rewrite,
        &src.ext,
        out.scratch,
    ) else {
        out.c.resend_missed += 1;
        return true;
    };
    let bytes = out.scratch.get(..n).unwrap_or(&[]);
    match guarded(s, |rtc| {
        let mut api = rtc.direct_api();
        api.advance_time(now);
        api.write_rtx(ticket.ssrc, bytes)
    }) {
        Ok(Ok(RtxOutcome::Queued)) => {
            out.c.resent += 1;
            touch(s, slot, out.touched);
            true
        }
        Ok(Ok(RtxOutcome::Refused(_))) => {
            out.c.resend_refused += 1;
            true
        }
        Ok(Err(_)) => {
            out.c.resend_missed += 1;
            true
        }
        Err(()) => {
            out.doomed.push((ticket.sub, CloseReason::Panicked));
            false
        }
    }
}

impl Shard {
    pub(super) fn on_rtp(
        &mut self,
        slot: usize,
        rtp: RtpAct,
        now: Instant,
        backend: &mut dyn IoBackend,
    ) {
        let RtpAct {
            mid,
            ssrc,
            pt,
            len,
            seq,
            ts,
            marker,
            payload_offset,
            layer: rid_layer,
            fwd,
        } = rtp;
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        let id = s.id;
        let mid = mid.or_else(|| s.pt_mid.iter().find(|(p, _)| *p == pt).map(|(_, m)| *m));
        let Some(mid) = mid else {
            self.c.drops.no_route += 1;
            return;
        };
        let repair = pt < 128 && s.repair_pts & (1u128 << pt) != 0;
        if !repair {
            match s.rx_ssrcs.iter_mut().find(|(m, _)| *m == mid) {
                Some(e) => e.1 = ssrc,
                None => s.rx_ssrcs.push((mid, ssrc)),
            }
            match s.rx_counts.iter_mut().find(|(m, _, _)| *m == mid) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += len as u64;
                }
                None => s.rx_counts.push((mid, 1, len as u64)),
            }
        }
        let codec = codec_of(&s.pt_codec, pt);
        // A relayed simulcast track's layers are its SSRCs, as the sending engine said.
        let rid_layer = rid_layer.or_else(|| {
            s.ssrc_layers
                .iter()
                .find(|(x, _, _)| *x == ssrc)
                .map(|&(_, l, _)| l)
        });
        let key = (id, mid);
        let Some(route) = self.routes.get_mut(&key) else {
            self.c.drops.no_route += 1;
            return;
        };
        if repair {
            self.c.drops.leg_rewrite += 1;
            return;
        }
        let packet = self.scratch.get(..len).unwrap_or(&[]);
        let padding = match packet.first() {
            Some(b0) if b0 & 0x20 != 0 => packet.last().map_or(0, |p| usize::from(*p)),
            _ => 0,
        };
        let payload_len = len.saturating_sub(payload_offset).saturating_sub(padding);
        let mut meta = PacketMeta::new(
            seq,
            ts,
            marker,
            u16::try_from(payload_offset).unwrap_or(u16::MAX),
            u16::try_from(payload_len).unwrap_or(0),
            now,
        );
        let facts = PayloadFacts::parse(codec, payload_of(packet, &meta));
        facts.fill_meta(&mut meta);
        let cache_packets = route.cache_packets(&self.ctx);
        let Some(layer) = route.layers.layer_of(
            rid_layer,
            route.spec.kind == MediaKind::Audio,
            ssrc,
            cache_packets,
            now,
        ) else {
            self.c.drops.no_route += 1;
            return;
        };
        let (sr, generation, duplicate) = route.layers.ingest(layer, packet, meta, self.epoch);
        if duplicate {
            self.c.drops.duplicate += 1;
            return;
        }
        let newly_live = route.layers.count(layer, len, now);
        let info = PktInfo {
            layer,
            live_layers: route.layers.live(now).bits().count_ones() as u8,
            codec,
            ext: fwd,
            generation,
            meta,
            sr,
        };
        let remote = route.remote;
        if let (MediaKind::Audio, Some(a)) = (route.spec.kind, fwd.audio_level) {
            // The V bit is only meaningful when negotiated; the level alone ranks.
            if !self.speakers.record(id, a.level, None, now) {
                self.speakers.add_track(id);
                self.speakers.record(id, a.level, None, now);
            }
        }
        if newly_live {
            self.reallocate_route(key, now);
        }
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        let packet = self.scratch.get(..len).unwrap_or(&[]);
        let (n_fwd, kf) =
            forward_shard_legs!(self, backend, &mut route.legs, packet, &info, &facts, now);
        let interval = self.ctx.keyframe_interval;
        let mut due = kf;
        for (l, (pending, last)) in route
            .layers
            .kf_pending
            .iter()
            .zip(route.layers.kf_last.iter())
            .enumerate()
        {
            if *pending && last.is_none_or(|t| now.saturating_duration_since(t) >= interval) {
                due |= 1 << l;
            }
        }
        self.c.rtp_forwarded += n_fwd;
        self.local_fwd += n_fwd;
        if remote != 0 {
            self.push_remote(key, info, remote, len, now);
        }
        for l in 0..MAX_LAYERS as u8 {
            if due & (1 << l) != 0 {
                self.request_keyframe_route(key, l, now);
            }
        }
    }

    /// Runs the allocators of every local subscriber of a route (a layer appeared: targets
    /// are set before its first packet is forwarded).
    pub(super) fn reallocate_route(&mut self, key: RouteKey, now: Instant) {
        let n = self.routes.get(&key).map_or(0, |r| r.legs.len());
        for i in 0..n {
            let Some(slot) = self
                .routes
                .get(&key)
                .and_then(|r| r.legs.get(i))
                .map(|l| l.slot)
            else {
                break;
            };
            self.allocate_session(slot, now);
        }
    }

    pub(super) fn push_remote(
        &mut self,
        key: RouteKey,
        info: PktInfo,
        mut remote: u64,
        len: usize,
        now: Instant,
    ) {
        while remote != 0 {
            let shard = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            if !self.out_batch_room(shard, len, now) {
                continue;
            }
            let Some(Some(batch)) = self.out_batches.get_mut(shard) else {
                continue;
            };
            let start = batch.buf.len();
            batch
                .buf
                .extend_from_slice(self.scratch.get(..len).unwrap_or(&[]));
            batch.pkts.push(BatchPkt {
                key,
                info,
                start,
                end: start + len,
            });
            self.c.cross_shard_out += 1;
        }
    }

    /// Makes sure a batch for `shard` is being filled with room for one more entry of
    /// `len` bytes: sends the current one if it is full, takes an emptied batch from the
    /// pool (or a new one) if there is none. `false`: no such shard.
    fn out_batch_room(&mut self, shard: usize, len: usize, now: Instant) -> bool {
        let max = self.ctx.forward_batch;
        let full = match self.out_batches.get(shard) {
            Some(Some(b)) => b.is_full(len, max),
            Some(None) => false,
            None => return false,
        };
        if full {
            self.send_batch(shard);
        }
        match self.out_batches.get_mut(shard) {
            Some(Some(_)) => true,
            Some(slot) => {
                let b = self
                    .ctx
                    .ret_rx
                    .try_recv()
                    .unwrap_or_else(|_| Batch::new(self.ctx.index, now, max));
                *slot = Some(Batch { recv_at: now, ..b });
                true
            }
            None => false,
        }
    }

    pub(super) fn send_batch(&mut self, shard: usize) {
        let Some(batch) = self.out_batches.get_mut(shard).and_then(Option::take) else {
            return;
        };
        let Some(peer) = self.ctx.peers.get(shard) else {
            return;
        };
        let n = batch.pkts.len() as u64;
        // Retransmission requests and answers lost with the batch stay unanswered.
        let rtx = (batch.asks.len() + batch.rtx.len()) as u64;
        match peer.data_tx.try_send(DataMsg::Batch(batch)) {
            Ok(()) => peer.waker.wake(),
            Err(TrySendError::Full(DataMsg::Batch(mut b)))
            | Err(TrySendError::Disconnected(DataMsg::Batch(mut b))) => {
                self.c.drops.cross_shard_full += n + rtx;
                self.c.resend_missed += rtx;
                b.clear();
                if let Some(me) = self.ctx.peers.get(self.ctx.index) {
                    let _ = me.ret_tx.try_send(b);
                }
            }
            Err(_) => {
                self.c.drops.cross_shard_full += n + rtx;
                self.c.resend_missed += rtx;
            }
        }
    }

    pub(super) fn send_batches(&mut self) {
        for shard in 0..self.out_batches.len() {
            self.send_batch(shard);
        }
    }

    /// Answers a subscriber's NACKs from the publisher layer's shared [`PacketCache`]
    /// (sessions built with no retransmission ring, `rtx_buffer_packets = 0`): for each
    /// sequence number the leg's downtrack names the source packet (layer, sequence
    /// number, and the timestamp and VP8 numbering it went out with), which is rewritten
    /// for the leg again and handed to the subscriber's `Rtc` as a retransmission.
    ///
    /// The caches live on the publisher's shard. When that is another shard, the
    /// resolved NACK goes there as an [`RtxAsk`](super::RtxAsk) in the batch for it; that
    /// shard sends the cached packet back ([`Shard::answer_asks`]) and this shard writes
    /// it for the leg ([`Shard::on_rtx_answers`]), one loop iteration of each shard
    /// later. NACKs nothing answers are counted in `resend_missed`, on the shard that
    /// finds out. Allocation-free.
    ///
    /// [`PacketCache`]: crate::sfu::PacketCache
    pub(super) fn on_resend(
        &mut self,
        slot: usize,
        req: &rtc_core::event::ResendRequest,
        now: Instant,
    ) {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return;
        };
        let Some(&(sub_mid, key, _)) = s.legs.iter().find(|(_, _, ssrc)| *ssrc == req.ssrc) else {
            return;
        };
        let sub = s.id;
        let rtt = s.rtt.unwrap_or_default();
        let Some(pub_shard) = self.routes.get(&key).map(|r| r.spec.pub_shard) else {
            return;
        };
        for &seq in req.seqs() {
            let Some(leg) = self.routes.get_mut(&key).and_then(|r| {
                r.legs
                    .iter_mut()
                    .find(|l| l.sub == sub && l.params.mid == sub_mid)
            }) else {
                return;
            };
            let Some(entry) = leg.dt.nack_resend(seq, now, rtt) else {
                self.c.resend_missed += 1;
                continue;
            };
            let ticket = RtxTicket {
                sub,
                ssrc: req.ssrc,
                entry,
            };
            if pub_shard != self.ctx.index {
                self.ask_remote(pub_shard, RtxAsk { key, ticket }, now);
                continue;
            }
            let Shard {
                sessions,
                routes,
                scratch,
                by_id,
                c,
                touched,
                doomed,
                ..
            } = self;
            let src = routes.get(&key).and_then(|route| {
                cached_source(route, key, sessions, by_id, entry.layer, entry.src_ext_seq)
            });
            let Some(src) = src else {
                c.resend_missed += 1;
                continue;
            };
            let mut out = RtxOut {
                scratch,
                c,
                touched,
                doomed,
            };
            if !write_resend(sessions, routes, slot, key, &ticket, &src, &mut out, now) {
                return;
            }
        }
    }

    /// Queues a resolved NACK for the publisher's shard `pub_shard`.
    fn ask_remote(&mut self, pub_shard: usize, ask: RtxAsk, now: Instant) {
        if !self.out_batch_room(pub_shard, 0, now) {
            self.c.resend_missed += 1;
            return;
        }
        match self.out_batches.get_mut(pub_shard) {
            Some(Some(batch)) => batch.asks.push(ask),
            _ => self.c.resend_missed += 1,
        }
    }

    /// On the publisher's shard: answers the asks of another shard's subscribers (from
    /// shard `to`) with the cached packets, in the batch for that shard. Packets no
    /// longer cached are counted in `resend_missed` here.
    pub(super) fn answer_asks(&mut self, to: usize, asks: &[RtxAsk], now: Instant) {
        for ask in asks {
            let (layer, ext_seq) = (ask.ticket.entry.layer, ask.ticket.entry.src_ext_seq);
            let len = self.routes.get(&ask.key).and_then(|route| {
                cached_source(route, ask.key, &self.sessions, &self.by_id, layer, ext_seq)
                    .map(|src| src.packet.len())
            });
            let Some(len) = len else {
                self.c.resend_missed += 1;
                continue;
            };
            if !self.out_batch_room(to, len, now) {
                self.c.resend_missed += 1;
                continue;
            }
            let Shard {
                sessions,
                routes,
                by_id,
                out_batches,
                ..
            } = self;
            let src = routes
                .get(&ask.key)
                .and_then(|route| cached_source(route, ask.key, sessions, by_id, layer, ext_seq));
            let (Some(src), Some(Some(batch))) = (src, out_batches.get_mut(to)) else {
                self.c.resend_missed += 1;
                continue;
            };
            let start = batch.buf.len();
            batch.buf.extend_from_slice(src.packet);
            batch.rtx.push(RtxPkt {
                key: ask.key,
                ticket: ask.ticket,
                codec: src.codec,
                ext: src.ext,
                meta: src.meta,
                start,
                end: start + src.packet.len(),
            });
        }
    }

    /// On the subscriber's shard: writes the cached packets the publisher's shard sent
    /// back (`buf` holds their bytes) as retransmissions on the legs that asked.
    pub(super) fn on_rtx_answers(&mut self, answers: &[RtxPkt], buf: &[u8], now: Instant) {
        for a in answers {
            let slot = self.by_id.get(&a.ticket.sub).copied();
            let (Some(slot), Some(packet)) = (slot, buf.get(a.start..a.end)) else {
                // The subscriber left meanwhile.
                self.c.resend_missed += 1;
                continue;
            };
            if self.doomed.iter().any(|(id, _)| *id == a.ticket.sub) {
                // Its `Rtc` panicked on an earlier answer: not touched again.
                self.c.resend_missed += 1;
                continue;
            }
            let src = Source {
                packet,
                meta: a.meta,
                codec: a.codec,
                ext: a.ext,
            };
            let Shard {
                sessions,
                routes,
                scratch,
                c,
                touched,
                doomed,
                ..
            } = self;
            let mut out = RtxOut {
                scratch,
                c,
                touched,
                doomed,
            };
            write_resend(
                sessions, routes, slot, a.key, &a.ticket, &src, &mut out, now,
            );
        }
    }

    pub(super) fn on_keyframe_request(&mut self, slot: usize, leg_ssrc: u32, now: Instant) {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return;
        };
        let Some(&(sub_mid, key, _)) = s.legs.iter().find(|(_, _, ssrc)| *ssrc == leg_ssrc) else {
            return;
        };
        let sub = s.id;
        let pin = s.pins.iter().find(|(m, _)| *m == sub_mid).map(|&(_, l)| l);
        let _ = self.ctx.events_tx.try_send(EngineEvent::KeyframeRequested {
            publisher: key.0,
            mid: key.1,
            requester: sub,
        });
        // The subscriber decodes the layer its downtrack forwards (a pinned leg's one
        // layer, even before it started).
        let layer = pin.or_else(|| {
            self.routes
                .get(&key)
                .and_then(|r| {
                    r.legs
                        .iter()
                        .find(|l| l.sub == sub && l.params.mid == sub_mid)
                })
                .and_then(|l| l.dt.current_layer().or(l.dt.target_layer()))
        });
        let layer = layer.unwrap_or(0);
        self.keyframe_upstream(key, layer, now);
    }

    /// Asks the publisher of `key` for a keyframe of `layer`, on its shard.
    pub(super) fn keyframe_upstream(&mut self, key: RouteKey, layer: u8, now: Instant) {
        let Some(route) = self.routes.get(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let pub_shard = route.spec.pub_shard;
        if pub_shard == self.ctx.index {
            self.request_keyframe_route(key, layer, now);
        } else if let Some(peer) = self.ctx.peers.get(pub_shard) {
            match peer.data_tx.try_send(DataMsg::Keyframe(key, layer)) {
                Ok(()) => peer.waker.wake(),
                Err(_) => self.c.drops.cross_shard_full += 1,
            }
        }
    }

    /// On the publisher's shard: sends a PLI for the layer's source stream, at most one
    /// per keyframe interval per layer (later requests are remembered and sent when it
    /// elapses).
    pub(super) fn request_keyframe_route(&mut self, key: RouteKey, layer: u8, now: Instant) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let l = usize::from(layer).min(MAX_LAYERS - 1);
        let ls = &mut route.layers;
        let due = ls.kf_last[l]
            .is_none_or(|t| now.saturating_duration_since(t) >= self.ctx.keyframe_interval);
        let ssrc = ls.pubs.get(l).and_then(Option::as_ref).map(|p| p.ssrc);
        let (Some(ssrc), true) = (ssrc, due) else {
            ls.kf_pending[l] = true;
            return;
        };
        ls.kf_pending[l] = false;
        ls.kf_last[l] = Some(now);
        let Some(&slot) = self.by_id.get(&key.0) else {
            return;
        };
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            match guarded(s, |rtc| {
                rtc.direct_api()
                    .request_keyframe(ssrc, KeyframeRequestKind::Pli)
            }) {
                Ok(Ok(())) => {
                    self.c.keyframe_requests += 1;
                    touch(s, slot, &mut self.touched);
                }
                Ok(Err(_)) => {}
                Err(()) => self.doomed.push((s.id, CloseReason::Panicked)),
            }
        }
    }
}
