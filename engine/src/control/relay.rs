//! The `relay.*` operations: relays between engines over the control socket (see
//! `EngineHandle::relay_listen` for the set-up and `docs/control-protocol.md`).

use std::net::SocketAddr;
use std::time::Duration;

use control::{ClientId, ControlError, Event, Response};
use rtc_core::dtls::Fingerprint;
use rtc_core::ice::IceCreds;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

use super::wire::{map_err, parse_mid, track_id};
use super::{EngineControl, Sess};
use crate::api::{MediaDesc, RelayDownReason, SessionId};
use crate::engine::{RelayAnswer, RelayInvite, RelayLayer, RelayParams, RelayTrack};
use crate::forward::PayloadDesc;

fn params(keepalive_ms: Option<u64>, timeout_ms: Option<u64>) -> Result<RelayParams, ControlError> {
    let mut p = RelayParams::default();
    if let Some(k) = keepalive_ms {
        if !(10..=60_000).contains(&k) {
            return Err(ControlError::bad_params("keepalive_ms must be 10..=60000"));
        }
        p.keepalive = Duration::from_millis(k);
    }
    if let Some(t) = timeout_ms {
        if !(100..=600_000).contains(&t) || Duration::from_millis(t) <= p.keepalive {
            return Err(ControlError::bad_params(
                "timeout_ms must be 100..=600000 and above keepalive_ms",
            ));
        }
        p.timeout = Duration::from_millis(t);
    }
    Ok(p)
}

fn fingerprint(s: &str) -> Result<Fingerprint, ControlError> {
    s.parse()
        .map_err(|_| ControlError::bad_params(format!("bad fingerprint {s:?}")))
}

fn creds(ufrag: &str, pwd: &str) -> Result<IceCreds, ControlError> {
    if ufrag.len() < 4 || pwd.len() < 22 || ufrag.len() > 256 || pwd.len() > 256 {
        return Err(ControlError::bad_params(
            "ICE ufrag must be 4..=256 and pwd 22..=256 characters",
        ));
    }
    Ok(IceCreds {
        ufrag: ufrag.to_owned(),
        pass: pwd.to_owned(),
    })
}

/// The wire name of a relay's end.
pub(super) fn down_reason(r: RelayDownReason) -> String {
    r.as_str().to_owned()
}

/// `relay.down` for the event stream.
pub(super) fn down_event(relay: SessionId, reason: RelayDownReason) -> Event {
    Event::RelayDown(control::RelayDown {
        relay: control::SessionId(relay.0),
        reason: down_reason(reason),
    })
}

impl EngineControl {
    pub(super) fn relay_listen(&self, r: control::RelayListen) -> Result<Response, ControlError> {
        let p = params(r.keepalive_ms, r.timeout_ms)?;
        let inv = self.shared.engine.relay_listen(p).map_err(map_err)?;
        Ok(Response::RelayInvite(control::RelayInvite {
            relay: control::SessionId(inv.relay.0),
            ice_ufrag: inv.ice.ufrag,
            ice_pwd: inv.ice.pass,
            fingerprint: inv.fingerprint.to_string(),
            addr: inv.addr.to_string(),
            keepalive_ssrc: inv.keepalive_ssrc,
        }))
    }

    pub(super) fn relay_connect(
        &self,
        client: ClientId,
        r: control::RelayConnect,
    ) -> Result<Response, ControlError> {
        let p = params(r.keepalive_ms, r.timeout_ms)?;
        let i = &r.invite;
        let addr: SocketAddr = i
            .addr
            .parse()
            .map_err(|_| ControlError::bad_params(format!("bad address {:?}", i.addr)))?;
        let invite = RelayInvite {
            relay: SessionId(i.relay.0),
            ice: creds(&i.ice_ufrag, &i.ice_pwd)?,
            fingerprint: fingerprint(&i.fingerprint)?,
            addr,
            keepalive_ssrc: i.keepalive_ssrc,
        };
        let ans = self
            .shared
            .engine
            .relay_connect(&invite, p)
            .map_err(map_err)?;
        self.track_relay(client, ans.relay);
        Ok(Response::RelayAnswer(control::RelayAnswer {
            relay: control::SessionId(ans.relay.0),
            ice_ufrag: ans.ice.ufrag,
            ice_pwd: ans.ice.pass,
            fingerprint: ans.fingerprint.to_string(),
            keepalive_ssrc: ans.keepalive_ssrc,
        }))
    }

    pub(super) fn relay_accept(
        &self,
        client: ClientId,
        r: control::RelayAccept,
    ) -> Result<Response, ControlError> {
        let a = &r.answer;
        let answer = RelayAnswer {
            relay: SessionId(a.relay.0),
            ice: creds(&a.ice_ufrag, &a.ice_pwd)?,
            fingerprint: fingerprint(&a.fingerprint)?,
            keepalive_ssrc: a.keepalive_ssrc,
        };
        let id = SessionId(r.relay.0);
        self.shared
            .engine
            .relay_accept(id, &answer)
            .map_err(map_err)?;
        self.track_relay(client, id);
        Ok(Response::Done)
    }

    /// Records a relay session like one created here (not reaped with its client: a
    /// relay outlives the orchestrator's connection), so `publish`/`subscribe` see it.
    fn track_relay(&self, client: ClientId, id: SessionId) {
        let shard = self
            .shared
            .engine
            .session_stats(id)
            .map(|s| s.shard)
            .unwrap_or(0);
        self.shared
            .state()
            .sessions
            .insert(id, Sess::unreaped(shard, client, Vec::new()));
    }

    pub(super) fn relay_publish(&self, r: control::RelayPublish) -> Result<Response, ControlError> {
        let mid = parse_mid(&r.track)?;
        let t = self
            .shared
            .engine
            .relay_publish(SessionId(r.relay.0), SessionId(r.session.0), mid)
            .map_err(map_err)?;
        Ok(Response::RelayTrack(control::RelayTrack {
            relay_track: track_id(t.mid),
            kind: t.kind.to_string(),
            ssrc: t.ssrc,
            rtx_ssrc: t.rtx_ssrc,
            rtx: t.rtx,
            payloads: t
                .payloads
                .iter()
                .map(|p| control::RelayPayload {
                    pt: p.pt,
                    codec: p.codec.to_string(),
                    clock_rate: p.clock_rate,
                })
                .collect(),
            layers: t
                .layers
                .iter()
                .map(|l| control::RelayLayer {
                    layer: l.layer,
                    ssrc: l.ssrc,
                    rtx_ssrc: l.rtx_ssrc,
                })
                .collect(),
        }))
    }

    pub(super) fn relay_unpublish(
        &self,
        r: control::RelayTrackRef,
    ) -> Result<Response, ControlError> {
        let mid = parse_mid(&r.relay_track)?;
        self.shared
            .engine
            .relay_unpublish(SessionId(r.relay.0), mid)
            .map_err(map_err)?;
        Ok(Response::Done)
    }

    pub(super) fn relay_attach(&self, r: control::RelayAttach) -> Result<Response, ControlError> {
        let t = &r.track;
        let mid = parse_mid(&t.relay_track)?;
        let kind = MediaKind::from_name(&t.kind)
            .ok_or_else(|| ControlError::bad_params(format!("bad kind {:?}", t.kind)))?;
        if t.payloads.len() > 64 || t.rtx.len() > 64 {
            return Err(ControlError::bad_params("at most 64 payload types"));
        }
        if t.layers.len() > 3 || t.layers.iter().any(|l| l.layer > 2) {
            return Err(ControlError::bad_params("at most 3 layers, indexes 0 to 2"));
        }
        let payloads: Vec<PayloadDesc> = t
            .payloads
            .iter()
            .filter(|p| p.pt < 128)
            .map(|p| PayloadDesc {
                pt: p.pt,
                codec: rtc_core::media::Codec::from_name(&p.codec),
                clock_rate: p.clock_rate,
            })
            .collect();
        let track = RelayTrack {
            mid,
            kind,
            ssrc: t.ssrc,
            payloads: payloads.clone(),
            rtx_ssrc: t.rtx_ssrc,
            rtx: t
                .rtx
                .iter()
                .filter(|(a, b)| *a < 128 && *b < 128)
                .copied()
                .collect(),
            layers: t
                .layers
                .iter()
                .map(|l| RelayLayer {
                    layer: l.layer,
                    ssrc: l.ssrc,
                    rtx_ssrc: l.rtx_ssrc,
                })
                .collect(),
            source: (SessionId(0), mid),
        };
        let id = SessionId(r.relay.0);
        self.shared
            .engine
            .relay_attach(id, &track)
            .map_err(map_err)?;
        if let Some(s) = self.shared.state().sessions.get_mut(&id)
            && !s.media.iter().any(|m| m.mid == mid)
        {
            s.media.push(MediaDesc {
                mid,
                kind,
                direction: Direction::RecvOnly,
                payloads,
                mid_ext_id: None,
                tx_ssrc: None,
                nack: true,
            });
        }
        Ok(Response::Done)
    }

    pub(super) fn relay_close(&self, r: control::RelayRef) -> Result<Response, ControlError> {
        self.shared
            .engine
            .relay_close(SessionId(r.relay.0))
            .map_err(map_err)?;
        Ok(Response::Done)
    }
}
