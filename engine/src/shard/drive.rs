//! Timers and output: driving the sessions' timeouts and draining their output.

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc_core::{Event, Input, Output, Transmit};

use super::{Act, Counters, RtpAct, Session, Shard, guarded, guarded_rtc, touch};
use crate::api::{CloseReason, DropCounters, EngineEvent, SessionId, TrackCounters};
use crate::io::{IoBackend, SendBuf, SendHint};
use crate::sfu::allocator::AllocationReport;

/// After an allocation of the subscriber in `slot`: tells its `Rtc` the send rate and
/// asks for a probe when the allocator wants more than the estimate allows (see
/// [`RateDrive`](crate::sfu::allocator::RateDrive)). `estimate` is what the allocator
/// was given; probes run only when it is the `Rtc`'s own (no override).
pub(super) fn drive_rate(
    s: &mut Session,
    slot: usize,
    estimate: u64,
    report: &AllocationReport,
    now: Instant,
    touched: &mut Vec<usize>,
    doomed: &mut Vec<(SessionId, CloseReason)>,
) {
    let probing = s.estimate_override.is_none() && s.rtc.bandwidth_estimate().is_some();
    let cmd = s.rate.update(now, estimate, report, probing);
    if cmd.is_empty() {
        return;
    }
    let res = guarded(s, |rtc| {
        if let Some((target, max)) = cmd.send_rate {
            rtc.set_send_rate(target, max);
        }
        if let Some(goal) = cmd.probe_bps {
            rtc.request_probe(goal);
        }
    });
    match res {
        // The pacer's next wake-up may have moved: drain it.
        Ok(()) => touch(s, slot, touched),
        Err(()) => doomed.push((s.id, CloseReason::Panicked)),
    }
}

impl Shard {
    pub(super) fn drive_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, slot, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(Some(s)) = self.sessions.get_mut(slot) else {
                continue;
            };
            if s.id.0 != id || s.heap_at != Some(t) {
                continue;
            }
            s.heap_at = None;
            if s.timer_at > now {
                s.heap_at = Some(s.timer_at);
                self.timers.push(Reverse((s.timer_at, slot, id)));
                continue;
            }
            match guarded(s, |rtc| rtc.handle_input(Input::Timeout(now))) {
                Ok(Ok(())) => touch(s, slot, &mut self.touched),
                Ok(Err(_)) => self.doomed.push((s.id, CloseReason::Failed)),
                Err(()) => self.doomed.push((s.id, CloseReason::Panicked)),
            }
        }
    }

    /// Drains every touched session's output. Each time
    /// [`ShardCtx::submit_every`](super::ShardCtx) datagrams were queued, they are
    /// submitted to the kernel before the next session is drained (a publisher's packets
    /// touch their legs last, and the touched list is a stack, so a fan-out's legs are
    /// drained, and leave, right after the packet they carry).
    // Never inlined: a symbol for the instruction-count benchmark's `--toggle-collect`
    // (`scripts/icount-forward.sh`); one call per datagram / per loop iteration.
    #[inline(never)]
    pub(super) fn drain_touched(&mut self, now: Instant, backend: &mut dyn IoBackend) {
        let every = self.ctx.submit_every;
        let mut mark = self.c.packets_out;
        while let Some(slot) = self.touched.pop() {
            if let Some(Some(s)) = self.sessions.get_mut(slot) {
                s.touched = false;
                self.drain(slot, now, backend);
            }
            self.bury();
            let queued = self.c.packets_out.wrapping_sub(mark);
            if queued >= every {
                self.submit_part(queued, backend);
                mark = self.c.packets_out;
            }
        }
    }

    /// Drains one session's output: transmits to the backend, events handled, the next
    /// timeout scheduled.
    pub(super) fn drain(&mut self, slot: usize, now: Instant, backend: &mut dyn IoBackend) {
        while let Some(act) = self.poll_session(slot, backend) {
            if !self.apply(slot, act, now, backend) {
                return;
            }
        }
    }

    /// One `poll_output` of the session in `slot`, under [`guarded`]: a transmit goes to
    /// the backend here, everything else becomes an [`Act`]. `None`: no session there.
    fn poll_session(&mut self, slot: usize, backend: &mut dyn IoBackend) -> Option<Act> {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return None;
        };
        let hint = &mut s.send_hint;
        Some(
            match guarded_rtc(&mut s.panic_next, &mut s.rtc, |rtc| rtc.poll_output()) {
                Err(()) => Act::Panicked,
                Ok(Err(_)) => Act::Failed,
                Ok(Ok(Output::Timeout(t))) => Act::Timeout(t),
                Ok(Ok(Output::Transmit(t))) => {
                    transmit(&self.ctx.announced, &mut self.c, backend, &t, hint);
                    Act::Continue
                }
                Ok(Ok(Output::Event(ev))) => event_act(ev, &mut self.scratch, &mut self.c.drops),
            },
        )
    }

    /// Carries out one [`Act`] of the session in `slot`. Returns whether draining it goes
    /// on (`false` after its timeout was scheduled or it panicked).
    fn apply(&mut self, slot: usize, act: Act, now: Instant, backend: &mut dyn IoBackend) -> bool {
        match act {
            Act::Continue => {}
            Act::Timeout(t) => {
                self.schedule(slot, t);
                return false;
            }
            Act::Rtp(rtp) if self.relay_consumes(slot, rtp.mid) => {}
            Act::Rtp(rtp) => self.on_rtp(slot, rtp, now, backend),
            Act::StreamEnded(mid) => self.on_stream_ended(slot, mid, now),
            Act::Estimate(bps) => {
                if let Some(Some(s)) = self.sessions.get_mut(slot) {
                    s.estimate = Some(bps);
                    if tracing::enabled!(tracing::Level::DEBUG)
                        && let Some(b) = s.rtc.bwe()
                    {
                        let (reported, missing) = b.reported();
                        tracing::debug!(
                            shard = self.ctx.index,
                            session = %s.id,
                            bps,
                            delay_bps = b.delay_based().estimate(),
                            loss_bps = b.loss_based().estimate(),
                            acked_bps = b.acked_bitrate(),
                            usage = ?b.usage(),
                            last_loss = b.loss_based().last_loss(),
                            reported,
                            missing,
                            probes = b.probe_results(),
                            "estimate"
                        );
                    }
                }
                self.allocate_session(slot, now);
            }
            Act::Keyframe(ssrc) => self.on_keyframe_request(slot, ssrc, now),
            Act::Resend(req) => self.on_resend(slot, &req, now),
            Act::Connected => self.on_connected(slot, now),
            // Keep draining (a failing Rtc may still flush an alert), then remove.
            Act::Failed => self.doom(slot, CloseReason::Failed),
            Act::Panicked => {
                self.doom(slot, CloseReason::Panicked);
                return false;
            }
            Act::Ice(st) => self.on_ice_state(slot, st),
            Act::Track(t, rtt) => self.on_track_stats(slot, t, rtt),
            Act::ChannelOpen(channel, label) => self.on_channel_open(slot, channel, label),
            Act::ChannelData(d) => self.on_channel_data(slot, d),
            Act::ChannelClose(channel) => self.on_channel_close(slot, channel),
        }
        true
    }

    /// Records the session's next timeout and puts it in the timer heap when it is
    /// earlier than the entry already there; a session no longer alive is doomed.
    fn schedule(&mut self, slot: usize, t: Instant) {
        let Some(Some(s)) = self.sessions.get_mut(slot) else {
            return;
        };
        s.timer_at = t;
        let mut pushed = false;
        if s.heap_at.is_none_or(|h| t < h) {
            s.heap_at = Some(t);
            self.timers.push(Reverse((t, slot, s.id.0)));
            pushed = true;
        }
        if !s.rtc.is_alive() {
            self.doomed.push((s.id, CloseReason::Failed));
        }
        if pushed && self.timers.len() > timer_bound(self.by_id.len()) {
            self.compact_timers();
        }
    }

    /// Drops the superseded entries from the timer heap, in place. An entry is live when
    /// it is its session's earliest (`heap_at`); the others only leave when they come
    /// due, so a session whose timeout keeps moving earlier (a pacer) piles them up.
    /// Compacting at [`timer_bound`] keeps the heap within the capacity
    /// [`Shard::reserve_timers`] gave it, so forwarding never grows it.
    fn compact_timers(&mut self) {
        let sessions = &self.sessions;
        self.timers.retain(|Reverse((t, slot, id))| {
            matches!(sessions.get(*slot), Some(Some(s)) if s.id.0 == *id && s.heap_at == Some(*t))
        });
    }

    /// Gives the timer heap room for [`timer_bound`] entries of the live sessions (when
    /// a session is added: allocation is fine there, not per packet).
    pub(super) fn reserve_timers(&mut self) {
        let want = timer_bound(self.by_id.len()) + 1;
        if self.timers.capacity() < want {
            self.timers.reserve(want - self.timers.len());
        }
    }

    fn on_connected(&mut self, slot: usize, now: Instant) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            if !s.connected {
                self.c.handshakes += 1;
                // Out of range (over 60 s) is impossible within the connect timeout's
                // reach and would only lose one sample.
                let _ = self
                    .handshake_ns
                    .record(super::nanos(now.saturating_duration_since(s.created)));
            }
            s.connected = true;
            let _ = self
                .ctx
                .events_tx
                .try_send(EngineEvent::SessionConnected(s.id));
        }
    }

    fn on_ice_state(&mut self, slot: usize, st: rtc_core::ice::IceConnectionState) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            s.ice_state = st;
            let _ = self.ctx.events_tx.try_send(EngineEvent::IceState(s.id, st));
        }
    }

    fn on_track_stats(&mut self, slot: usize, t: TrackCounters, rtt: Option<Duration>) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            s.put_track(t);
            if rtt.is_some() {
                s.rtt = rtt;
            }
        }
    }

    fn on_channel_open(&mut self, slot: usize, channel: u16, label: String) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            let known = s.channels.iter().any(|(c, _)| *c == channel);
            if label.len() > self.ctx.max_label
                || (!known && s.channels.len() >= self.ctx.max_channels)
            {
                self.c.channels_refused += 1;
                let closed = guarded(s, |rtc| {
                    rtc.channel(rtc_core::event::ChannelId(channel))
                        .map(|mut ch| ch.close())
                });
                if closed.is_err() {
                    self.doomed.push((s.id, CloseReason::Panicked));
                }
                return;
            }
            s.channels.retain(|(c, _)| *c != channel);
            s.channels.push((channel, label.clone()));
            let _ = self.ctx.events_tx.try_send(EngineEvent::ChannelOpen {
                session: s.id,
                channel,
                label,
            });
        }
    }

    fn on_channel_data(&mut self, slot: usize, d: rtc_core::event::ChannelData) {
        if let Some(Some(s)) = self.sessions.get(slot) {
            let label = s
                .channels
                .iter()
                .find(|(c, _)| *c == d.id.0)
                .map(|(_, l)| l.clone())
                .unwrap_or_default();
            let _ = self.ctx.events_tx.try_send(EngineEvent::ChannelMessage {
                session: s.id,
                channel: d.id.0,
                label,
                binary: d.binary,
                data: d.data,
            });
        }
    }

    fn on_channel_close(&mut self, slot: usize, channel: u16) {
        if let Some(Some(s)) = self.sessions.get_mut(slot) {
            s.channels.retain(|(c, _)| *c != channel);
        }
    }
}

/// Queues one datagram of a session on the backend, from the socket of its source
/// address (else the first socket of the destination's family, else socket 0).
fn transmit(
    announced: &[SocketAddr],
    c: &mut Counters,
    backend: &mut dyn IoBackend,
    t: &Transmit<'_>,
    hint: &mut SendHint,
) {
    if t.proto == rtc_core::Protocol::Tcp {
        if backend.tcp_send(t.destination, t.contents) {
            c.packets_out += 1;
            c.bytes_out += t.contents.len() as u64;
        }
        return;
    }
    let sock = socket_for(announced, t.source, t.destination);
    if backend.queue_send_hinted(sock, t.destination, t.contents, hint) {
        c.packets_out += 1;
        c.bytes_out += t.contents.len() as u64;
    }
}

/// A datagram an `Rtc` protected in place in the lent buffer `buf`: its first `len`
/// bytes.
pub(super) struct LentTransmit {
    pub proto: rtc_core::Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub len: usize,
}

/// [`transmit`] for a datagram written in a lent buffer: the buffer joins the send batch
/// as it is (ICE-TCP frames are copied to their connection and the buffer goes back).
pub(super) fn transmit_lent(
    announced: &[SocketAddr],
    c: &mut Counters,
    backend: &mut dyn IoBackend,
    t: &LentTransmit,
    mut buf: SendBuf,
    hint: &mut SendHint,
) {
    if t.proto == rtc_core::Protocol::Tcp {
        let sent = buf
            .bytes_mut()
            .get(..t.len)
            .is_some_and(|d| backend.tcp_send(t.destination, d));
        backend.return_send_buf(buf);
        if sent {
            c.packets_out += 1;
            c.bytes_out += t.len as u64;
        }
        return;
    }
    let sock = socket_for(announced, t.source, t.destination);
    if backend.queue_send_buf(sock, t.destination, buf, t.len, hint) {
        c.packets_out += 1;
        c.bytes_out += t.len as u64;
    }
}

/// The index of the shard socket to send from `source` to `destination`: the socket
/// bound to `source`, else the first of the destination's address family, else the
/// first.
fn socket_for(announced: &[SocketAddr], source: SocketAddr, destination: SocketAddr) -> usize {
    announced
        .iter()
        .position(|a| *a == source)
        .or_else(|| {
            announced
                .iter()
                .position(|a| a.is_ipv4() == destination.is_ipv4())
        })
        .unwrap_or(0)
}

/// What the shard does about one event. An RTP packet is copied to `scratch` (the
/// event borrows the `Rtc`); one too large for it is dropped and counted. Its layer comes
/// from the `Rtc`'s SSRC → rid binding (which holds after the sender stops sending the
/// rid extension), its forwarded extensions are parsed here with the `Rtc`'s map.
fn event_act(ev: Event<'_>, scratch: &mut [u8], drops: &mut DropCounters) -> Act {
    match ev {
        Event::RtpPacket(p) => match scratch.get_mut(..p.packet.len()) {
            Some(dst) => {
                dst.copy_from_slice(p.packet);
                let layer = super::layers::rid_layer(p.rid.as_ref().map(|r| r.as_str()), p.layer);
                // Ranges recorded against `p.packet` hold in its copy in `scratch`.
                let fwd = crate::forward::FwdExt::from_values(&p.extensions(), p.packet);
                Act::Rtp(RtpAct {
                    mid: p.mid,
                    ssrc: p.ssrc,
                    pt: p.payload_type,
                    len: p.packet.len(),
                    seq: p.seq_no,
                    ts: p.timestamp,
                    marker: p.marker,
                    payload_offset: p.payload_offset,
                    layer,
                    fwd,
                })
            }
            None => {
                drops.leg_rewrite += 1;
                Act::Continue
            }
        },
        Event::KeyframeRequest(k) => Act::Keyframe(k.ssrc),
        Event::ResendRequest(r) => Act::Resend(r),
        Event::StreamEnded(e) => Act::StreamEnded(e.mid),
        Event::EgressBitrateEstimate(bps) => Act::Estimate(bps),
        Event::Connected => Act::Connected,
        Event::Failed(_) => Act::Failed,
        Event::IceConnectionStateChange(st) => Act::Ice(st),
        Event::MediaIngressStats(st) => Act::Track(
            TrackCounters {
                mid: st.mid,
                inbound: true,
                packets: st.packets,
                bytes: st.bytes,
                lost: u64::try_from(st.lost).unwrap_or(0),
                nacks: st.nacks_sent,
                keyframe_requests: st.plis_sent + st.firs_sent,
                layer: None,
                target_layer: None,
                layer_bps: [None; 3],
            },
            None,
        ),
        Event::MediaEgressStats(st) => Act::Track(
            TrackCounters {
                mid: st.mid,
                inbound: false,
                packets: st.packets,
                bytes: st.bytes,
                lost: st.rtx_sent,
                nacks: st.nacks_received,
                keyframe_requests: st.plis_received + st.firs_received,
                layer: None,
                target_layer: None,
                layer_bps: [None; 3],
            },
            st.rtt,
        ),
        Event::ChannelOpen(id, label) => Act::ChannelOpen(id.0, label),
        Event::ChannelData(d) => Act::ChannelData(d),
        Event::ChannelClose(id) => Act::ChannelClose(id.0),
        _ => Act::Continue,
    }
}

/// Timer-heap entries allowed before superseded ones are dropped: two per live session
/// (its live entry and one superseded) plus slack for sessions just removed.
fn timer_bound(sessions: usize) -> usize {
    2 * sessions + 64
}
