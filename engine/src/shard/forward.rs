//! Forwarding: local fan-out, cross-shard batches and keyframe requests.

use std::time::Instant;

use crossbeam_channel::TrySendError;
use rtc_core::event::KeyframeRequestKind;
use rtc_core::media::{MediaKind, Mid};

use super::{BATCH_BYTES, Batch, BatchPkt, DataMsg, Leg, RouteKey, Session, Shard, guarded, touch};
use crate::api::{CloseReason, DropCounters, EngineEvent, SessionId};
use crate::forward::rewrite_for_leg;

/// Writes the packet for every local leg of a route. Returns the packets written.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_legs(
    legs: &mut [Leg],
    packet: &[u8],
    source: u64,
    sessions: &mut [Option<Session>],
    touched: &mut Vec<usize>,
    doomed: &mut Vec<(SessionId, CloseReason)>,
    drops: &mut DropCounters,
    now: Instant,
) -> u64 {
    let mut n_fwd = 0;
    for leg in legs {
        let Some(Some(s)) = sessions.get_mut(leg.slot) else {
            continue;
        };
        if s.id != leg.sub {
            continue;
        }
        // The leg's packet is rewritten straight into the subscriber's send buffer.
        let mut n = 0usize;
        let (params, rw) = (&leg.params, &mut leg.rw);
        let res = guarded(s, |rtc| {
            rtc.direct_api().write_rtp_packet_with(|buf| {
                n = rewrite_for_leg(packet, source, params, rw, now, buf).ok()?;
                Some(n)
            })
        });
        match res {
            Ok(Ok(false)) => {
                drops.leg_rewrite += 1;
            }
            Ok(Ok(true)) => {
                n_fwd += 1;
                leg.packets += 1;
                leg.bytes += n as u64;
                touch(s, leg.slot, touched);
            }
            Ok(Err(_)) => drops.leg_not_ready += 1,
            Err(()) => doomed.push((leg.sub, CloseReason::Panicked)),
        }
    }
    n_fwd
}

impl Shard {
    pub(super) fn on_rtp(
        &mut self,
        slot: usize,
        mid: Option<Mid>,
        ssrc: u32,
        pt: u8,
        len: usize,
        now: Instant,
    ) {
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
        let key = (id, mid);
        let Some(route) = self.routes.get_mut(&key) else {
            self.c.drops.no_route += 1;
            return;
        };
        if repair {
            self.c.drops.leg_rewrite += 1;
            return;
        }
        route.src_ssrc = Some(ssrc);
        let remote = route.remote;
        let packet = self.scratch.get(..len).unwrap_or(&[]);
        let n_fwd = forward_legs(
            &mut route.legs,
            packet,
            id.0,
            &mut self.sessions,
            &mut self.touched,
            &mut self.doomed,
            &mut self.c.drops,
            now,
        );
        let kf_due = route.kf_pending
            && route
                .kf_last
                .is_none_or(|t| now.saturating_duration_since(t) >= self.ctx.keyframe_interval);
        self.c.rtp_forwarded += n_fwd;
        self.local_fwd += n_fwd;
        if remote != 0 {
            self.push_remote(key, remote, len, now);
        }
        if kf_due {
            self.request_keyframe_route(key, now);
        }
    }

    pub(super) fn push_remote(&mut self, key: RouteKey, mut remote: u64, len: usize, now: Instant) {
        while remote != 0 {
            let shard = remote.trailing_zeros() as usize;
            remote &= remote - 1;
            let full = match self.out_batches.get(shard) {
                Some(Some(b)) => {
                    b.pkts.len() >= self.ctx.forward_batch || b.buf.len() + len > BATCH_BYTES
                }
                Some(None) => false,
                None => continue,
            };
            if full {
                self.send_batch(shard);
            }
            let batch = match self.out_batches.get_mut(shard) {
                Some(Some(b)) => b,
                Some(slot) => {
                    let b = self.ctx.ret_rx.try_recv().unwrap_or_else(|_| Batch {
                        from: self.ctx.index,
                        recv_at: now,
                        buf: Vec::with_capacity(BATCH_BYTES),
                        pkts: Vec::with_capacity(self.ctx.forward_batch),
                    });
                    slot.insert(Batch { recv_at: now, ..b })
                }
                None => continue,
            };
            let start = batch.buf.len();
            batch
                .buf
                .extend_from_slice(self.scratch.get(..len).unwrap_or(&[]));
            batch.pkts.push(BatchPkt {
                key,
                start,
                end: start + len,
            });
            self.c.cross_shard_out += 1;
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
        match peer.data_tx.try_send(DataMsg::Batch(batch)) {
            Ok(()) => peer.waker.wake(),
            Err(TrySendError::Full(DataMsg::Batch(mut b)))
            | Err(TrySendError::Disconnected(DataMsg::Batch(mut b))) => {
                self.c.drops.cross_shard_full += n;
                b.buf.clear();
                b.pkts.clear();
                if let Some(me) = self.ctx.peers.get(self.ctx.index) {
                    let _ = me.ret_tx.try_send(b);
                }
            }
            Err(_) => self.c.drops.cross_shard_full += n,
        }
    }

    pub(super) fn send_batches(&mut self) {
        for shard in 0..self.out_batches.len() {
            self.send_batch(shard);
        }
    }

    pub(super) fn on_keyframe_request(&mut self, slot: usize, leg_ssrc: u32, now: Instant) {
        let Some(Some(s)) = self.sessions.get(slot) else {
            return;
        };
        let Some(&(_, key, _)) = s.legs.iter().find(|(_, _, ssrc)| *ssrc == leg_ssrc) else {
            return;
        };
        let _ = self.ctx.events_tx.try_send(EngineEvent::KeyframeRequested {
            publisher: key.0,
            mid: key.1,
            requester: s.id,
        });
        self.keyframe_upstream(key, now);
    }

    /// Asks the publisher of `key` for a keyframe, on its shard.
    pub(super) fn keyframe_upstream(&mut self, key: RouteKey, now: Instant) {
        let Some(route) = self.routes.get(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let pub_shard = route.spec.pub_shard;
        if pub_shard == self.ctx.index {
            self.request_keyframe_route(key, now);
        } else if let Some(peer) = self.ctx.peers.get(pub_shard) {
            match peer.data_tx.try_send(DataMsg::Keyframe(key)) {
                Ok(()) => peer.waker.wake(),
                Err(_) => self.c.drops.cross_shard_full += 1,
            }
        }
    }

    /// On the publisher's shard: sends a PLI for the route's source stream, at most one
    /// per keyframe interval (later requests are remembered and sent when it elapses).
    pub(super) fn request_keyframe_route(&mut self, key: RouteKey, now: Instant) {
        let Some(route) = self.routes.get_mut(&key) else {
            return;
        };
        if route.spec.kind != MediaKind::Video {
            return;
        }
        let due = route
            .kf_last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.ctx.keyframe_interval);
        let (Some(ssrc), true) = (route.src_ssrc, due) else {
            route.kf_pending = true;
            return;
        };
        route.kf_pending = false;
        route.kf_last = Some(now);
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
