//! Receive path: datagrams from the backend and batches from other shards.

use std::time::Instant;

use rtc_core::ice::stun_ufrag;
use rtc_core::{Input, Protocol, Receive};

use super::forward::{forward_legs, payload_of};
use super::{DTLS_PROBE, DataMsg, Shard, guarded, touch};
use crate::api::CloseReason;
use crate::io::Received;
use crate::sfu::PayloadFacts;

impl Shard {
    // Never inlined: a symbol for the instruction-count benchmark's `--toggle-collect`
    // (`scripts/icount-forward.sh`); one call per datagram / per loop iteration.
    #[inline(never)]
    pub(super) fn on_datagram(&mut self, now: Instant, r: Received<'_>) {
        self.c.packets_in += 1;
        self.c.bytes_in += r.data.len() as u64;
        let data: &[u8] = r.data;
        let destination = self.ctx.announced.get(r.socket).copied().unwrap_or(r.local);
        let is_stun = matches!(data.first(), Some(0..=3));
        let slot = match data.first() {
            Some(0..=3) => {
                let Ok(ufrag) = stun_ufrag(data) else {
                    self.c.drops.malformed += 1;
                    return;
                };
                let by_ufrag = ufrag.and_then(|ours| self.by_ufrag.get(ours).copied());
                match by_ufrag.or_else(|| self.by_addr.get(&r.source).copied()) {
                    Some(s) => s,
                    None => {
                        self.c.drops.unknown_source += 1;
                        return;
                    }
                }
            }
            Some(20..=63) | Some(128..=191) => match self.by_addr.get(&r.source) {
                Some(&s) => s,
                None => {
                    self.c.drops.unknown_source += 1;
                    return;
                }
            },
            _ => {
                self.c.drops.malformed += 1;
                return;
            }
        };
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            self.c.drops.unknown_source += 1;
            return;
        };
        let recv = Receive {
            proto: Protocol::Udp,
            source: r.source,
            destination,
            contents: data,
        };
        match guarded(s, |rtc| rtc.handle_input(Input::Receive(now, recv))) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.c.drops.dead_session += 1;
                self.doomed.push((s.id, CloseReason::Failed));
                return;
            }
            Err(()) => {
                self.doomed.push((s.id, CloseReason::Panicked));
                return;
            }
        }
        let st = s.rtc.stats();
        self.c.drops.srtp_auth += st.srtp_errors.saturating_sub(s.last_srtp_errors);
        self.c.drops.rtc_dropped += st.dropped.saturating_sub(s.last_dropped);
        s.last_srtp_errors = st.srtp_errors;
        s.last_dropped = st.dropped;
        touch(s, slot, &mut self.touched);
        let owner = self.by_addr.get(&r.source).copied();
        if is_stun && owner != Some(slot) {
            let probe = Receive {
                contents: &DTLS_PROBE,
                ..recv
            };
            // Learn the address only once ICE validated it (a checked binding request),
            // and never take it from another live session: a binding request replayed
            // from a forged source would otherwise steal that session's upstream.
            let taken = owner.is_some_and(|o| o != slot);
            if !taken && s.rtc.accepts(&probe) {
                self.by_addr.insert(r.source, slot);
                if !s.addrs.contains(&r.source) {
                    s.addrs.push(r.source);
                }
            }
        }
    }

    pub(super) fn on_data(&mut self, msg: DataMsg, now: Instant) {
        match msg {
            DataMsg::Keyframe(key, layer) => self.request_keyframe_route(key, layer, now),
            DataMsg::Batch(mut batch) => {
                let mut n_fwd = 0;
                for p in &batch.pkts {
                    self.c.cross_shard_in += 1;
                    let newly_live = match self.routes.get_mut(&p.key) {
                        Some(route) => route.layers.count(p.info.layer, p.end - p.start, now),
                        None => {
                            self.c.drops.no_route += 1;
                            continue;
                        }
                    };
                    if newly_live {
                        self.reallocate_route(p.key, now);
                    }
                    let (Some(route), Some(packet)) =
                        (self.routes.get_mut(&p.key), batch.buf.get(p.start..p.end))
                    else {
                        continue;
                    };
                    let facts = PayloadFacts::parse(p.info.codec, payload_of(packet, &p.info.meta));
                    let (n, kf) = forward_legs(
                        &mut route.legs,
                        packet,
                        &p.info,
                        &facts,
                        &mut self.sessions,
                        &mut self.touched,
                        &mut self.doomed,
                        &mut self.c.drops,
                        now,
                    );
                    n_fwd += n;
                    for l in 0..3u8 {
                        if kf & (1 << l) != 0 {
                            self.keyframe_upstream(p.key, l, now);
                        }
                    }
                }
                self.c.rtp_forwarded += n_fwd;
                if n_fwd > 0 {
                    self.remote_fwd.push((batch.recv_at, n_fwd));
                }
                batch.buf.clear();
                batch.pkts.clear();
                if let Some(peer) = self.ctx.peers.get(batch.from) {
                    // Full or gone: the batch is simply freed.
                    let _ = peer.ret_tx.try_send(batch);
                }
                self.bury();
            }
        }
    }
}
