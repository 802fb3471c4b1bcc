//! Control commands from the [`EngineHandle`](crate::EngineHandle).

use std::time::Instant;

use rtc_core::RtcError;
use rtc_core::event::{ChannelId, KeyframeRequestKind};
use rtc_core::media::{MediaKind, Mid};

use super::layers::{apply_target, downtrack_input};
use super::{Command, Leg, LegSpec, Route, Session, Shard, guarded, touch};
use crate::api::{
    ChannelTarget, CloseReason, EngineError, LegLayers, SessionId, SessionSnapshot, TrackCounters,
};
use crate::io::IoBackend;
use crate::sfu::DownTrack;
use crate::sfu::allocator::Preference;
use crate::sfu::downtrack::NACK_RING;

impl Shard {
    pub(super) fn on_command(&mut self, cmd: Command, now: Instant, backend: &mut dyn IoBackend) {
        match cmd {
            Command::CreateSession { prepared, reply } => {
                let r = self.install_session(*prepared, now);
                let _ = reply.send(r);
            }
            Command::CloseSession { id, reply } => {
                let found = match self.by_id.get(&id) {
                    Some(&slot) => {
                        self.close_session(slot, now, backend, CloseReason::Requested);
                        true
                    }
                    None => false,
                };
                let _ = reply.send(found);
            }
            Command::AddLeg { spec, reply } => {
                let ok = self.add_leg(*spec, now);
                let _ = reply.send(ok);
            }
            Command::RemoveLeg {
                sub,
                sub_mid,
                reply,
            } => {
                let ok = self.remove_leg(sub, sub_mid).is_some();
                let _ = reply.send(ok);
            }
            Command::SetRemote {
                key,
                spec,
                shard,
                on,
                reply,
            } => {
                if shard < 64 {
                    let bit = 1u64 << shard;
                    if on {
                        let route = self
                            .routes
                            .entry(key)
                            .or_insert_with(|| Box::new(Route::new(spec)));
                        route.remote |= bit;
                        route.grow_caches(&self.ctx);
                    } else if let Some(r) = self.routes.get_mut(&key) {
                        r.remote &= !bit;
                        if r.is_empty() {
                            self.routes.remove(&key);
                        }
                    }
                }
                let _ = reply.send(());
            }
            Command::SetPreference {
                sub,
                sub_mid,
                pref,
                reply,
            } => {
                let ok = self.set_preference(sub, sub_mid, pref, now);
                let _ = reply.send(ok);
            }
            Command::SetEstimate { sub, bps, reply } => {
                let ok = match self.by_id.get(&sub).copied() {
                    Some(slot) => {
                        if let Some(Some(s)) = self.sessions.get_mut(slot) {
                            s.estimate_override = bps;
                        }
                        self.allocate_session(slot, now);
                        true
                    }
                    None => false,
                };
                let _ = reply.send(ok);
            }
            Command::LegLayers { sub, reply } => {
                let _ = reply.send(self.leg_layers(sub));
            }
            Command::RequestKeyframe {
                publisher,
                mid,
                reply,
            } => {
                let ok = self.request_keyframe_api(publisher, mid);
                let _ = reply.send(ok);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats(backend));
            }
            Command::CloseAll { reply } => {
                let n = self.close_all(now, backend, CloseReason::Shutdown);
                let _ = reply.send(n);
            }
            Command::InjectPanic { id } => {
                if let Some(&slot) = self.by_id.get(&id)
                    && let Some(Some(s)) = self.sessions.get_mut(slot)
                {
                    s.panic_next = true;
                }
            }
            Command::InjectShardPanic => {
                panic!("injected shard panic (test hook)");
            }
            Command::SessionStats { id, reply } => {
                let _ = reply.send(self.snapshot(id, now));
            }
            Command::ChannelSend {
                id,
                target,
                binary,
                data,
                reply,
            } => {
                let _ = reply.send(self.channel_send(id, &target, binary, &data));
            }
            Command::Renegotiate { id, change, reply } => {
                let _ = reply.send(self.renegotiate(id, change));
            }
            Command::Shutdown => {
                self.close_all(now, backend, CloseReason::Shutdown);
                self.stop = true;
            }
            Command::DebugHold { entered, release } => {
                let _ = entered.send(());
                let _ = release.recv_timeout(std::time::Duration::from_secs(60));
            }
            Command::Relay(cmd) => self.on_relay_command(cmd, now),
        }
    }

    pub(super) fn snapshot(&self, id: SessionId, now: Instant) -> Option<SessionSnapshot> {
        let slot = *self.by_id.get(&id)?;
        let s = self.sessions.get(slot)?.as_ref()?;
        let remote_addr = s.addrs.last().copied();
        let local_addr = remote_addr.and_then(|r| {
            self.ctx
                .announced
                .iter()
                .find(|a| a.is_ipv4() == r.is_ipv4())
                .copied()
        });
        Some(SessionSnapshot {
            id,
            shard: self.ctx.index,
            alive: s.rtc.is_alive(),
            connected: s.rtc.is_connected(),
            ice_state: s.ice_state,
            local_addr,
            remote_addr,
            rtt: s.rtt,
            peer: s.rtc.stats().clone(),
            tracks: self.track_counters(s, now),
            channels: s.channels.clone(),
            estimate_bps: s
                .estimate_override
                .or(s.estimate)
                .or_else(|| s.rtc.bandwidth_estimate()),
            probes: s.rate.probes(),
        })
    }

    /// The `Rtc`'s stream reports, with packet and byte counts from the shard's own
    /// counters (raw RTP-mode writes are not counted by the `Rtc`'s reports).
    pub(super) fn track_counters(&self, s: &Session, now: Instant) -> Vec<TrackCounters> {
        let mut v = s.track_stats.clone();
        let mut put = |mid: Mid, inbound: bool, packets: u64, bytes: u64| match v
            .iter_mut()
            .find(|t| t.mid == mid && t.inbound == inbound)
        {
            Some(t) => {
                t.packets = t.packets.max(packets);
                t.bytes = t.bytes.max(bytes);
            }
            None => v.push(TrackCounters {
                mid,
                inbound,
                packets,
                bytes,
                lost: 0,
                nacks: 0,
                keyframe_requests: 0,
                layer: None,
                target_layer: None,
                layer_bps: [None; 3],
            }),
        };
        for (mid, p, b) in &s.rx_counts {
            put(*mid, true, *p, *b);
        }
        let mut layers = Vec::with_capacity(s.legs.len());
        for (mid, key, _) in &s.legs {
            if let Some(leg) = self.routes.get(key).and_then(|r| {
                r.legs
                    .iter()
                    .find(|l| l.sub == s.id && l.params.mid == *mid)
            }) {
                put(*mid, false, leg.packets, leg.bytes);
                layers.push((*mid, leg.dt.current_layer(), leg.dt.target_layer()));
            }
        }
        for (mid, layer, target) in layers {
            if let Some(t) = v.iter_mut().find(|t| t.mid == mid && !t.inbound) {
                t.layer = layer;
                t.target_layer = target;
            }
        }
        for t in v.iter_mut().filter(|t| t.inbound) {
            if let Some(r) = self.routes.get(&(s.id, t.mid))
                && r.spec.kind == MediaKind::Video
            {
                t.layer_bps = r.layers.layer_bps(now);
            }
        }
        v
    }

    pub(super) fn channel_send(
        &mut self,
        id: SessionId,
        target: &ChannelTarget,
        binary: bool,
        data: &[u8],
    ) -> Result<usize, EngineError> {
        let slot = *self.by_id.get(&id).ok_or(EngineError::UnknownSession(id))?;
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return Err(EngineError::UnknownSession(id));
        };
        let channel = match target {
            ChannelTarget::Id(c) => s.channels.iter().find(|(x, _)| x == c),
            ChannelTarget::Label(l) => s.channels.iter().find(|(_, x)| x == l),
        }
        .map(|(c, _)| *c)
        .ok_or_else(|| {
            let name = match target {
                ChannelTarget::Id(c) => c.to_string(),
                ChannelTarget::Label(l) => format!("{l:?}"),
            };
            EngineError::NoSuchChannel(id, name)
        })?;
        let res = guarded(s, |rtc| match rtc.channel(ChannelId(channel)) {
            Some(mut ch) => ch.write(binary, data),
            None => Err(RtcError::InvalidState("no data-channel transport")),
        });
        touch(s, slot, &mut self.touched);
        match res {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(EngineError::Rtc(e)),
            Err(()) => {
                self.doomed.push((id, CloseReason::Panicked));
                Err(EngineError::SessionPanicked(id))
            }
        }
    }

    pub(super) fn add_leg(&mut self, spec: LegSpec, now: Instant) -> bool {
        let Some(&slot) = self.by_id.get(&spec.sub) else {
            return false;
        };
        // A leg already on this media section is moved (a source switch): it keeps its
        // downtrack so that sequence numbers and timestamps stay continuous.
        let moved = self.remove_leg(spec.sub, spec.params.mid);
        let clock = crate::forward::default_clock_rate(spec.route.kind);
        let (dt, pref) = match moved {
            Some((mut dt, pref)) => {
                dt.restart_source();
                (dt, pref)
            }
            None => {
                // The NACK map covers what the publisher's cache can still answer
                // (no cache configured: the full map), and nothing when the subscriber
                // did not negotiate NACK on the section.
                let cached = match spec.route.kind {
                    MediaKind::Audio => self.ctx.cache_audio_packets,
                    MediaKind::Video => self.ctx.cache_video_packets,
                };
                let entries = match (spec.nack, cached) {
                    (false, _) => 0,
                    (true, 0) => NACK_RING,
                    (true, n) => n,
                };
                (
                    DownTrack::with_nack_entries(clock, entries),
                    Preference::default(),
                )
            }
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return false;
        };
        let mut spec = spec;
        if let Some((_, map)) = s.rx_ext.iter().find(|(m, _)| *m == spec.params.mid) {
            spec.params = spec.params.with_forwarded_extensions(map);
        }
        s.legs.reserve_exact(1); // a few per session: no doubling slack
        s.legs.push((spec.params.mid, spec.key, spec.params.ssrc));
        s.pins.retain(|(m, _)| *m != spec.params.mid);
        if let Some(layer) = spec.pin {
            s.pins.push((spec.params.mid, layer));
        }
        let route = self
            .routes
            .entry(spec.key)
            .or_insert_with(|| Box::new(Route::new(spec.route)));
        if spec.nack && !route.nack {
            route.nack = true;
            route.grow_caches(&self.ctx);
        }
        let mut input = downtrack_input(route, now);
        input.preference = pref;
        s.alloc.insert(spec.params.mid, input);
        if route.legs.is_empty() {
            // Most routes have one leg (a 1:1 audio room), and a first push would make
            // room for four (a leg is under 1 KiB); more legs grow by doubling.
            route.legs.reserve_exact(1);
        }
        route.legs.push(Leg {
            sub: spec.sub,
            slot,
            params: spec.params,
            dt,
            generations: [0; super::layers::MAX_LAYERS],
            packets: 0,
            bytes: 0,
        });
        // The allocator picks the leg's layer; its downtrack asks for the keyframe a new
        // subscriber needs to start decoding.
        self.allocate_session(slot, now);
        true
    }

    /// Removes the leg of `sub` on its media section `sub_mid`; returns its downtrack and
    /// preference.
    pub(super) fn remove_leg(
        &mut self,
        sub: SessionId,
        sub_mid: Mid,
    ) -> Option<(DownTrack, Preference)> {
        let slot = *self.by_id.get(&sub)?;
        let s = self.sessions.get_mut(slot)?.as_mut()?;
        let pos = s.legs.iter().position(|(m, _, _)| *m == sub_mid)?;
        let (_, key, _) = s.legs.remove(pos);
        s.pins.retain(|(m, _)| *m != sub_mid);
        let pref = s
            .alloc
            .remove(sub_mid)
            .map(|i| i.preference)
            .unwrap_or_default();
        let route = self.routes.get_mut(&key)?;
        let i = route
            .legs
            .iter()
            .position(|l| l.sub == sub && l.params.mid == sub_mid)?;
        let leg = route.legs.swap_remove(i);
        if route.is_empty() {
            self.routes.remove(&key);
        }
        Some((leg.dt, pref))
    }

    /// Sets the preference of the leg of `sub` on `sub_mid` and re-allocates at once.
    pub(super) fn set_preference(
        &mut self,
        sub: SessionId,
        sub_mid: Mid,
        pref: Preference,
        now: Instant,
    ) -> bool {
        let Some(&slot) = self.by_id.get(&sub) else {
            return false;
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return false;
        };
        let Some(input) = s.alloc.input_mut(sub_mid) else {
            return false;
        };
        input.preference = pref;
        self.allocate_session(slot, now);
        // The temporal cap applies even when the spatial target did not change.
        let Some(Some(s)) = self.sessions.get(slot) else {
            return true;
        };
        let (Some(target), Some(&(_, key, _))) = (
            s.alloc.target(sub_mid),
            s.legs.iter().find(|(m, _, _)| *m == sub_mid),
        ) else {
            return true;
        };
        if let Some(leg) = self.routes.get_mut(&key).and_then(|r| {
            r.legs
                .iter_mut()
                .find(|l| l.sub == sub && l.params.mid == sub_mid)
        }) {
            apply_target(&mut leg.dt, target, pref.max_temporal);
        }
        true
    }

    /// The target and current layer of every leg of `sub`.
    pub(super) fn leg_layers(&self, sub: SessionId) -> Vec<LegLayers> {
        let Some(Some(s)) = self
            .by_id
            .get(&sub)
            .and_then(|&slot| self.sessions.get(slot))
        else {
            return Vec::new();
        };
        s.legs
            .iter()
            .filter_map(|(mid, key, _)| {
                let leg = self
                    .routes
                    .get(key)?
                    .legs
                    .iter()
                    .find(|l| l.sub == sub && l.params.mid == *mid)?;
                Some(LegLayers {
                    mid: *mid,
                    target: leg.dt.target_layer(),
                    current: leg.dt.current_layer(),
                })
            })
            .collect()
    }

    pub(super) fn request_keyframe_api(&mut self, publisher: SessionId, mid: Option<Mid>) -> bool {
        let Some(&slot) = self.by_id.get(&publisher) else {
            return false;
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return false;
        };
        let targets: Vec<u32> = s
            .rx_ssrcs
            .iter()
            .filter(|(m, _)| mid.is_none_or(|want| want == *m))
            .map(|(_, ssrc)| *ssrc)
            .collect();
        let mut any = false;
        for ssrc in targets {
            match guarded(s, |rtc| {
                rtc.direct_api()
                    .request_keyframe(ssrc, KeyframeRequestKind::Pli)
            }) {
                Ok(Ok(())) => {
                    any = true;
                    self.c.keyframe_requests += 1;
                }
                Ok(Err(_)) => {}
                Err(()) => {
                    self.doomed.push((s.id, CloseReason::Panicked));
                    break;
                }
            }
        }
        touch(s, slot, &mut self.touched);
        any
    }
}
