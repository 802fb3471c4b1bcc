//! The `plain.*` operations: plain RTP/SRTP egress and ingest (see
//! `EngineHandle::plain_egress` and `docs/control-protocol.md`), and the SDP file they
//! answer with.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use control::{ClientId, ControlError, Response};
use rtc_core::PlainSrtp;
use rtc_core::dtls::SrtpProfileId;
use rtc_core::media::{Codec, MediaKind, Mid};

use super::rooms::check_room_name;
use super::wire::{kind_of, map_err, parse_mid, shard_id, track_id};
use super::{EngineControl, Sess};
use crate::api::{Placement, SessionId};
use crate::engine::{PlainParams, PlainTrack};
use crate::forward::PayloadDesc;

/// Longest ingest silence timeout accepted (one day).
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The SDES name (RFC 4568 §6.2.1, RFC 7714 §14.2) of a profile, and back.
fn suite(p: SrtpProfileId) -> &'static str {
    match p {
        SrtpProfileId::Aes128CmSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        SrtpProfileId::AeadAes128Gcm => "AEAD_AES_128_GCM",
        SrtpProfileId::AeadAes256Gcm => "AEAD_AES_256_GCM",
    }
}

fn profile(name: &str) -> Result<SrtpProfileId, ControlError> {
    [
        SrtpProfileId::Aes128CmSha1_80,
        SrtpProfileId::AeadAes128Gcm,
        SrtpProfileId::AeadAes256Gcm,
    ]
    .into_iter()
    .find(|p| suite(*p) == name)
    .ok_or_else(|| ControlError::bad_params(format!("unknown SRTP suite {name:?}")))
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, ControlError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| ControlError::bad_params(format!("srtp.{field} is not base64")))
}

/// The keys of `srtp` as the engine uses them: `key` protects what `engine_sends`
/// (egress) or what the source sends (ingest); `reverse_key` the other direction.
fn keys(srtp: &control::PlainSrtp, engine_sends: bool) -> Result<PlainSrtp, ControlError> {
    let profile = profile(&srtp.suite)?;
    let key = b64("key", &srtp.key)?;
    let reverse = match &srtp.reverse_key {
        Some(k) => b64("reverse_key", k)?,
        None => key.clone(),
    };
    let (local_key, remote_key) = if engine_sends {
        (key, reverse)
    } else {
        (reverse, key)
    };
    Ok(PlainSrtp {
        profile,
        local_key,
        remote_key,
    })
}

/// One `m=` section of a plain SDP.
struct SdpMedia<'a> {
    kind: MediaKind,
    port: u16,
    ssrc: u32,
    payloads: &'a [PayloadDesc],
}

/// An SDP file (RFC 8866) for plain RTP at `ip`: one `m=` section per track with its
/// preferred payload type, RTCP multiplexed (RFC 5761), and an SDES crypto line (RFC 4568) when
/// `crypto` gives the suite and base64 key.
fn sdp(ip: IpAddr, media: &[SdpMedia<'_>], crypto: Option<(&str, &str)>) -> String {
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {} 1 IN {fam} {ip}\r\ns=rtc-engine plain RTP\r\nc=IN {fam} {ip}\r\nt=0 0\r\n",
        rand::random::<u32>()
    );
    for m in media {
        let proto = if crypto.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        // One codec per section: the first (preferred) media payload type, the one a
        // publisher sends. ffmpeg reads a single codec per `m=` line (the last
        // `a=rtpmap`), so listing them all would name the wrong one.
        let media_pts: Vec<&PayloadDesc> = m
            .payloads
            .iter()
            .filter(|p| !p.codec.is_repair())
            .take(1)
            .collect();
        let pts: Vec<String> = media_pts.iter().map(|p| p.pt.to_string()).collect();
        let _ = write!(s, "m={} {} {proto} {}\r\n", m.kind, m.port, pts.join(" "));
        for p in media_pts {
            let channels = if p.codec == Codec::Opus { "/2" } else { "" };
            let _ = write!(
                s,
                "a=rtpmap:{} {}/{}{channels}\r\n",
                p.pt, p.codec, p.clock_rate
            );
        }
        s.push_str("a=rtcp-mux\r\n");
        let _ = write!(s, "a=ssrc:{} cname:rtc-engine\r\n", m.ssrc);
        if let Some((suite, key)) = crypto {
            let _ = write!(s, "a=crypto:1 {suite} inline:{key}\r\n");
        }
    }
    s
}

fn payloads(ps: &[control::RelayPayload]) -> Result<Vec<PayloadDesc>, ControlError> {
    if ps.is_empty() || ps.len() > 64 {
        return Err(ControlError::bad_params(
            "a track has 1 to 64 payload types",
        ));
    }
    ps.iter()
        .map(|p| {
            if p.pt > 127 || p.clock_rate == 0 {
                return Err(ControlError::bad_params(format!(
                    "bad payload type {} / clock rate {}",
                    p.pt, p.clock_rate
                )));
            }
            Ok(PayloadDesc {
                pt: p.pt,
                codec: Codec::from_name(&p.codec),
                clock_rate: p.clock_rate,
            })
        })
        .collect()
}

fn relay_payloads(ps: &[PayloadDesc]) -> Vec<control::RelayPayload> {
    ps.iter()
        .map(|p| control::RelayPayload {
            pt: p.pt,
            codec: p.codec.to_string(),
            clock_rate: p.clock_rate,
        })
        .collect()
}

impl EngineControl {
    /// The tracks published in room `rid`: (publisher, mid, kind).
    fn room_tracks(&self, rid: crate::api::RoomId) -> Vec<(SessionId, Mid)> {
        let rooms = self.shared.engine.list_rooms();
        let Some(room) = rooms.iter().find(|r| r.id == rid) else {
            return Vec::new();
        };
        let st = self.shared.state();
        let mut out = Vec::new();
        for p in &room.publishers {
            let filter = st.published.get(&(*p, rid)).cloned().flatten();
            if let Some(s) = st.sessions.get(p) {
                out.extend(
                    s.media
                        .iter()
                        .filter(|m| m.can_recv())
                        .filter(|m| filter.as_ref().is_none_or(|f| f.contains(&m.mid)))
                        .map(|m| (*p, m.mid)),
                );
            }
        }
        out
    }

    /// Records a plain session as created by `client` (not reaped with it).
    fn track_plain(&self, client: ClientId, id: SessionId, shard: usize) {
        let media = self.shared.engine.session_media(id).unwrap_or_default();
        self.shared
            .state()
            .sessions
            .insert(id, Sess::unreaped(shard, client, media));
    }

    pub(super) fn plain_egress(
        &self,
        client: ClientId,
        r: control::PlainEgress,
    ) -> Result<Response, ControlError> {
        let rid = self.room_id(&r.room.0)?;
        let ip: IpAddr = r
            .addr
            .parse()
            .map_err(|_| ControlError::bad_params(format!("bad IP address {:?}", r.addr)))?;
        let srtp = r.srtp.as_ref().map(|k| keys(k, true)).transpose()?;
        let published = self.room_tracks(rid);
        let chosen: Vec<(SessionId, Mid)> = match &r.tracks {
            None => published,
            Some(ts) => ts
                .iter()
                .map(|t| {
                    let key = (SessionId(t.session.0), parse_mid(&t.track)?);
                    if published.contains(&key) {
                        Ok(key)
                    } else {
                        Err(ControlError::not_found(format!(
                            "session {} publishes no track {:?} in room {:?}",
                            t.session.0, t.track.0, r.room.0
                        )))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        if chosen.is_empty() {
            return Err(ControlError::not_found(format!(
                "room {:?} has no published track",
                r.room.0
            )));
        }
        let eng = &self.shared.engine;
        let mut done: Vec<(crate::engine::PlainEgress, u16)> = Vec::new();
        for (i, (publisher, mid)) in chosen.iter().enumerate() {
            let port = u16::try_from(usize::from(r.port) + 2 * i)
                .map_err(|_| ControlError::bad_params("port range past 65535"));
            let res = port.and_then(|port| {
                let params = PlainParams {
                    placement: Placement::Auto,
                    remote: SocketAddr::new(ip, port),
                    srtp: srtp.clone(),
                    timeout: None,
                };
                eng.plain_egress(params, *publisher, *mid)
                    .map(|e| (e, port))
                    .map_err(map_err)
            });
            match res {
                Ok(e) => done.push(e),
                Err(e) => {
                    for (d, _) in &done {
                        // Undo what was set up; a session gone already is fine.
                        let _ = eng.close_session(d.session);
                    }
                    return Err(e);
                }
            }
        }
        let mut tracks = Vec::with_capacity(done.len());
        for ((e, port), (publisher, mid)) in done.iter().zip(&chosen) {
            self.track_plain(client, e.session, e.shard);
            tracks.push(control::PlainEgressTrack {
                session: control::SessionId(e.session.0),
                source: control::PlainTrackRef {
                    session: control::SessionId(publisher.0),
                    track: track_id(*mid),
                },
                kind: kind_of(e.track.kind),
                port: *port,
                ssrc: e.track.ssrc,
                payloads: relay_payloads(&e.track.payloads),
            });
        }
        let media: Vec<SdpMedia<'_>> = done
            .iter()
            .map(|(e, port)| SdpMedia {
                kind: e.track.kind,
                port: *port,
                ssrc: e.track.ssrc,
                payloads: &e.track.payloads,
            })
            .collect();
        let crypto = r.srtp.as_ref().map(|k| (k.suite.as_str(), k.key.as_str()));
        Ok(Response::PlainEgressed(control::PlainEgressed {
            tracks,
            sdp: sdp(ip, &media, crypto),
        }))
    }

    pub(super) fn plain_ingest(
        &self,
        client: ClientId,
        r: control::PlainIngest,
    ) -> Result<Response, ControlError> {
        let source: SocketAddr = r
            .source
            .parse()
            .map_err(|_| ControlError::bad_params(format!("bad address {:?}", r.source)))?;
        let srtp = r.srtp.as_ref().map(|k| keys(k, false)).transpose()?;
        let timeout = match r.timeout_ms {
            Some(t) if !(100..=MAX_TIMEOUT_MS).contains(&t) => {
                return Err(ControlError::bad_params(format!(
                    "timeout_ms must be 100..={MAX_TIMEOUT_MS}"
                )));
            }
            t => t.map(Duration::from_millis),
        };
        let tracks = r
            .tracks
            .iter()
            .map(|t| {
                Ok(PlainTrack {
                    kind: match t.kind {
                        control::MediaKind::Audio => MediaKind::Audio,
                        control::MediaKind::Video => MediaKind::Video,
                    },
                    ssrc: t.ssrc,
                    payloads: payloads(&t.payloads)?,
                })
            })
            .collect::<Result<Vec<_>, ControlError>>()?;
        let shard = self.place(r.room.as_ref().map(|n| n.0.as_str()), r.shard)?;
        let params = PlainParams {
            placement: Placement::Shard(shard),
            remote: source,
            srtp,
            timeout,
        };
        let eng = &self.shared.engine;
        let ing = eng.plain_ingest(params, &tracks).map_err(map_err)?;
        self.track_plain(client, ing.session, ing.shard);
        if let Some(room) = &r.room {
            let published = check_room_name(&room.0)
                .and_then(|()| self.ensure_room(room).map_err(map_err))
                .and_then(|_| {
                    self.publish(control::Publish {
                        room: room.clone(),
                        session: control::SessionId(ing.session.0),
                        tracks: None,
                    })
                });
            if let Err(e) = published {
                // Undo the half set-up session; a session gone already is fine.
                let _ = eng.close_session(ing.session);
                self.shared.state().sessions.remove(&ing.session);
                return Err(e);
            }
        }
        let media: Vec<SdpMedia<'_>> = tracks
            .iter()
            .map(|t| SdpMedia {
                kind: t.kind,
                port: ing.local.port(),
                ssrc: t.ssrc,
                payloads: &t.payloads,
            })
            .collect();
        let crypto = r.srtp.as_ref().map(|k| (k.suite.as_str(), k.key.as_str()));
        Ok(Response::PlainIngested(control::PlainIngested {
            session: control::SessionId(ing.session.0),
            shard: shard_id(ing.shard),
            addr: ing.local.to_string(),
            tracks: ing.tracks.iter().map(|m| track_id(*m)).collect(),
            sdp: sdp(ing.local.ip(), &media, crypto),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_lists_media_payloads_and_crypto() {
        let vp8 = [
            PayloadDesc {
                pt: 96,
                codec: Codec::Vp8,
                clock_rate: 90_000,
            },
            PayloadDesc {
                pt: 97,
                codec: Codec::Rtx,
                clock_rate: 90_000,
            },
            PayloadDesc {
                pt: 98,
                codec: Codec::Vp9,
                clock_rate: 90_000,
            },
        ];
        let opus = [PayloadDesc {
            pt: 111,
            codec: Codec::Opus,
            clock_rate: 48_000,
        }];
        let media = [
            SdpMedia {
                kind: MediaKind::Video,
                port: 40_000,
                ssrc: 1,
                payloads: &vp8,
            },
            SdpMedia {
                kind: MediaKind::Audio,
                port: 40_002,
                ssrc: 2,
                payloads: &opus,
            },
        ];
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let s = sdp(ip, &media, None);
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n"), "{s}");
        assert!(s.contains("m=video 40000 RTP/AVP 96\r\n"), "{s}");
        assert!(s.contains("a=rtpmap:96 VP8/90000\r\n"), "{s}");
        assert!(!s.contains("VP9"), "{s}");
        assert!(!s.contains("rtx"), "{s}");
        assert!(s.contains("m=audio 40002 RTP/AVP 111\r\n"), "{s}");
        assert!(s.contains("a=rtpmap:111 opus/48000/2\r\n"), "{s}");
        let s = sdp(ip, &media, Some(("AES_CM_128_HMAC_SHA1_80", "QUJD")));
        assert!(s.contains("m=video 40000 RTP/SAVP 96\r\n"), "{s}");
        assert!(
            s.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJD\r\n"),
            "{s}"
        );
    }

    #[test]
    fn srtp_params_are_checked() {
        let k = |suite: &str, key: &str| control::PlainSrtp {
            suite: suite.into(),
            key: key.into(),
            reverse_key: None,
        };
        assert!(keys(&k("NOPE", "QUJD"), true).is_err());
        assert!(keys(&k("AEAD_AES_128_GCM", "not base64!"), true).is_err());
        let ok = keys(&k("AEAD_AES_128_GCM", "QUJD"), true).expect("decodes");
        assert_eq!(ok.local_key, b"ABC");
        assert_eq!(ok.profile, SrtpProfileId::AeadAes128Gcm);
    }
}
