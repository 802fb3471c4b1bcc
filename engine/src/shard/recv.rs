//! Receive path: datagrams from the backend and batches from other shards.

use std::time::Instant;

use rtc_core::ice::stun_ufrag;
use rtc_core::{Input, Protocol, Receive};

use super::forward::{forward_shard_legs, payload_of};
use super::{DTLS_PROBE, DataMsg, Shard, guarded, touch};
use crate::api::CloseReason;
use crate::io::{IoBackend, Received, TcpVerdict, Transport};
use crate::sfu::PayloadFacts;

impl Shard {
    // Never inlined: a symbol for the instruction-count benchmark's `--toggle-collect`
    // (`scripts/icount-forward.sh`); one call per datagram / per loop iteration.
    #[inline(never)]
    pub(super) fn on_datagram(&mut self, now: Instant, r: Received<'_>) {
        self.c.packets_in += 1;
        self.c.bytes_in += r.data.len() as u64;
        if r.transport == Transport::Tcp {
            return self.on_tcp_frame(now, r);
        }
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
        let recv = Receive {
            proto: Protocol::Udp,
            source: r.source,
            destination,
            contents: data,
        };
        if !self.input(slot, now, r.arrival, recv) {
            return;
        }
        let owner = self.by_addr.get(&r.source).copied();
        if is_stun && owner != Some(slot) {
            // Learn the address only once ICE validated it (a checked binding request),
            // and never take it from another live session: a binding request replayed
            // from a forged source would otherwise steal that session's upstream.
            let taken = owner.is_some_and(|o| o != slot);
            if !taken && self.validated(slot, &recv) {
                self.by_addr.insert(r.source, slot);
                if let Some(Some(s)) = self.sessions.get_mut(slot)
                    && !s.addrs.contains(&r.source)
                {
                    s.addrs.push(r.source);
                }
            }
        }
    }

    /// One RFC 4571 frame from an ICE-TCP connection. A connection belongs to the session
    /// whose ufrag its first frame (a binding request) names, once that session's ICE
    /// validated it; anything else on an unvalidated connection, and any frame that is
    /// not STUN/DTLS/RTP/RTCP, closes it.
    fn on_tcp_frame(&mut self, now: Instant, r: Received<'_>) {
        let data: &[u8] = r.data;
        let destination = (self.ctx.announced_tcp.get(r.socket).copied()).unwrap_or(r.local);
        let owner = self.by_tcp.get(&r.source).copied();
        let slot = match (owner, data.first()) {
            (Some(s), Some(0..=3 | 20..=63 | 128..=191)) => s,
            (None, Some(0..=3)) => {
                let by_ufrag = match stun_ufrag(data) {
                    Ok(u) => u.and_then(|ours| self.by_ufrag.get(ours).copied()),
                    Err(_) => None,
                };
                match by_ufrag {
                    Some(s) => s,
                    None => {
                        self.c.drops.unknown_source += 1;
                        self.tcp_verdicts.push((r.source, TcpVerdict::Close));
                        return;
                    }
                }
            }
            _ => {
                self.c.drops.malformed += 1;
                self.tcp_verdicts.push((r.source, TcpVerdict::Close));
                return;
            }
        };
        let recv = Receive {
            proto: Protocol::Tcp,
            source: r.source,
            destination,
            contents: data,
        };
        if !self.input(slot, now, None, recv) || owner.is_some() || !self.validated(slot, &recv) {
            return;
        }
        self.by_tcp.insert(r.source, slot);
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            s.tcp_addrs.push(r.source);
        }
        self.tcp_verdicts
            .push((r.source, TcpVerdict::Authenticated));
    }

    /// Hands one datagram to the session in `slot` and accounts for it, with its kernel
    /// receive time when the backend has one (the session's congestion feedback then
    /// reports when it reached the host, not when this shard read it). `false`: there
    /// is no such session, or it failed or panicked (and is doomed).
    fn input(
        &mut self,
        slot: usize,
        now: Instant,
        arrival: Option<Instant>,
        recv: Receive<'_>,
    ) -> bool {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            self.c.drops.unknown_source += 1;
            return false;
        };
        let input = match arrival {
            Some(arrival) if arrival < now => Input::ReceiveArrived {
                now,
                arrival,
                receive: recv,
            },
            _ => Input::Receive(now, recv),
        };
        match guarded(s, |rtc| rtc.handle_input(input)) {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.c.drops.dead_session += 1;
                self.doomed.push((s.id, CloseReason::Failed));
                return false;
            }
            Err(()) => {
                self.doomed.push((s.id, CloseReason::Panicked));
                return false;
            }
        }
        let st = s.rtc.stats();
        self.c.drops.srtp_auth += st.srtp_errors.saturating_sub(s.last_srtp_errors);
        self.c.drops.rtc_dropped += st.dropped.saturating_sub(s.last_dropped);
        s.last_srtp_errors = st.srtp_errors;
        s.last_dropped = st.dropped;
        touch(s, slot, &mut self.touched);
        true
    }

    /// Whether the session in `slot` has ICE-validated the path `recv` came over (its
    /// `Rtc` would accept DTLS from there).
    fn validated(&self, slot: usize, recv: &Receive<'_>) -> bool {
        let probe = Receive {
            contents: &DTLS_PROBE,
            ..*recv
        };
        matches!(self.sessions.get(slot), Some(Some(s)) if s.rtc.accepts(&probe))
    }

    /// Hands the shard's ICE-TCP verdicts to the backend and forgets connections the
    /// backend closed.
    pub(super) fn sync_tcp(&mut self, backend: &mut dyn IoBackend) {
        for (peer, v) in self.tcp_verdicts.drain(..) {
            backend.tcp_verdict(peer, v);
        }
        backend.tcp_take_closed(&mut self.tcp_closed);
        for peer in self.tcp_closed.drain(..) {
            if let Some(slot) = self.by_tcp.remove(&peer)
                && let Some(Some(s)) = self.sessions.get_mut(slot)
            {
                s.tcp_addrs.retain(|a| *a != peer);
            }
        }
    }

    // Not inlined: `scripts/icount-forward.sh` collects it by name (the cross-shard
    // hand-off's receiving side); one call per message, not per packet.
    #[inline(never)]
    pub(super) fn on_data(&mut self, msg: DataMsg, now: Instant, backend: &mut dyn IoBackend) {
        match msg {
            DataMsg::Keyframe(key, layer) => self.request_keyframe_route(key, layer, now),
            DataMsg::EndRoute(key) => {
                self.end_local_legs(key, now);
            }
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
                    let (n, kf) = forward_shard_legs!(
                        self,
                        backend,
                        &mut route.legs,
                        packet,
                        &p.info,
                        &facts,
                        now
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
                if !batch.rtx.is_empty() {
                    self.on_rtx_answers(&batch.rtx, &batch.buf, now);
                }
                if !batch.asks.is_empty() {
                    self.answer_asks(batch.from, &batch.asks, now);
                }
                batch.clear();
                if let Some(peer) = self.ctx.peers.get(batch.from) {
                    // Full or gone: the batch is simply freed.
                    let _ = peer.ret_tx.try_send(batch);
                }
                self.bury();
            }
        }
    }
}
