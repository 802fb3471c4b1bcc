//! Plain RTP sessions, the control side: media to or from RTP tools that speak neither
//! ICE nor DTLS (ffmpeg, GStreamer), unprotected or SRTP with keys given in the call.
//!
//! A plain session is a session like any other (one `Rtc` in RTP mode, now in its plain
//! mode; see `docs/architecture.md`, "Plain RTP") and is recorded like a connected
//! relay end: [`EngineHandle::plain_egress`] adds a leg from a publisher track with
//! [`EngineHandle::relay_publish`], [`EngineHandle::plain_ingest`] declares the tracks
//! the source sends with [`EngineHandle::relay_attach`], after which the session
//! publishes them like any publisher. Close either with
//! [`EngineHandle::close_session`].

use std::net::SocketAddr;

use rtc_core::PlainSrtp;
use rtc_core::media::MediaKind;

use super::*;
use crate::forward::PayloadDesc;
use crate::shard::{RelaySetup, prepare_plain};

/// Where a plain session sends (egress) or whom it accepts media from (ingest), and
/// how its media is protected.
#[derive(Debug, Clone)]
pub struct PlainParams {
    /// Where the session goes (`Auto`: the publisher's shard for an egress, the least
    /// loaded one for an ingest).
    pub placement: Placement,
    /// The peer's address: the receiver (egress) or the sender's source address
    /// (ingest). RTP and RTCP share it (RTCP multiplexed, RFC 5761).
    pub remote: SocketAddr,
    /// SRTP keys (`None`: plain RTP).
    pub srtp: Option<PlainSrtp>,
    /// An ingest whose source sends nothing (RTP or RTCP) for this long is closed
    /// (`None`: never).
    pub timeout: Option<Duration>,
}

/// A track a plain ingest receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainTrack {
    /// Audio or video.
    pub kind: MediaKind,
    /// The SSRC the source sends it with.
    pub ssrc: u32,
    /// Its payload types.
    pub payloads: Vec<PayloadDesc>,
}

/// What [`EngineHandle::plain_egress`] set up.
#[derive(Debug, Clone)]
pub struct PlainEgress {
    /// The plain session (close it with [`EngineHandle::close_session`]).
    pub session: SessionId,
    /// Its shard.
    pub shard: usize,
    /// The address it sends from.
    pub local: SocketAddr,
    /// The track it sends: its SSRC and the publisher's payload types.
    pub track: RelayTrack,
}

/// What [`EngineHandle::plain_ingest`] set up.
#[derive(Debug, Clone)]
pub struct PlainIngest {
    /// The plain session: a publisher of `tracks` (put it in a room with
    /// [`EngineHandle::publish`]).
    pub session: SessionId,
    /// Its shard.
    pub shard: usize,
    /// Where the source sends RTP and RTCP to.
    pub local: SocketAddr,
    /// The session's media section per track, in the order given.
    pub tracks: Vec<Mid>,
}

impl EngineHandle {
    /// Builds and installs a plain session on `shard`.
    fn plain_session(
        &self,
        shard: usize,
        params: &PlainParams,
    ) -> Result<(SessionId, SocketAddr), EngineError> {
        let link = self.live_link(shard)?;
        if link.draining.load(Ordering::Relaxed) {
            return Err(EngineError::ShardDraining(shard));
        }
        let remote = params.remote;
        let local = *link
            .announced
            .iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
            .ok_or(EngineError::NoRoute(remote))?;
        let id = SessionId(self.inner.next_session.fetch_add(1, Ordering::Relaxed));
        let prepared = prepare_plain(
            id,
            &link.cert,
            local,
            remote,
            params.srtp.as_ref(),
            Instant::now(),
        )?;
        let setup = RelaySetup {
            keepalive_ssrc: 0,
            peer_keepalive_ssrc: None,
            keepalive: None,
            timeout: params.timeout,
            remote: Some(remote),
            plain: true,
        };
        self.install_plain(shard, prepared, setup)?;
        Ok((id, local))
    }

    /// Undoes a plain session whose set-up failed half way.
    fn plain_abort(&self, id: SessionId) {
        // It may be gone already; nothing else to undo then.
        let _ = self.close_session(id);
        self.forget_plain(id);
    }

    /// Sends the publisher track `(publisher, mid)` as plain RTP (or SRTP with
    /// `params.srtp`) to `params.remote`: a new session with one leg (downtrack,
    /// keyframe request to the publisher at once, NACKs from the packet cache).
    /// Sender reports are multiplexed on the same port (RFC 5761). The publisher's
    /// payload types are kept.
    ///
    /// # Errors
    ///
    /// [`EngineError::Rtc`] for a remote with port 0 or keys of the wrong length,
    /// [`EngineError::AddressInUse`] when the remote address is another session's peer
    /// on that shard, [`EngineError::NoRoute`] without a shard address of its family,
    /// [`EngineError::UnknownSession`] / [`EngineError::NotInRoom`] for an unknown
    /// publisher or track; the errors of installing a session.
    pub fn plain_egress(
        &self,
        params: PlainParams,
        publisher: SessionId,
        mid: Mid,
    ) -> Result<PlainEgress, EngineError> {
        let shard = match params.placement {
            Placement::Shard(i) => i,
            Placement::Auto => self.session_shard(publisher)?,
        };
        let (session, local) = self.plain_session(shard, &params)?;
        match self.relay_publish(session, publisher, mid) {
            Ok(track) => Ok(PlainEgress {
                session,
                shard,
                local,
                track,
            }),
            Err(e) => {
                self.plain_abort(session);
                Err(e)
            }
        }
    }

    /// Receives plain RTP (or SRTP with `params.srtp`) from the source address
    /// `params.remote`: a new session whose media sections `tracks` are published
    /// tracks once the session is published in a room ([`EngineHandle::publish`]).
    /// Only datagrams from `params.remote` reach it.
    ///
    /// # Errors
    ///
    /// As [`EngineHandle::plain_egress`]; [`EngineError::TooManyMedia`] for no track
    /// or more tracks than a session may have.
    pub fn plain_ingest(
        &self,
        params: PlainParams,
        tracks: &[PlainTrack],
    ) -> Result<PlainIngest, EngineError> {
        let limit = self.inner.limits.max_media;
        if tracks.is_empty() || tracks.len() > limit {
            return Err(EngineError::TooManyMedia {
                sections: tracks.len(),
                limit,
            });
        }
        let shard = self.pick_shard(params.placement)?;
        let (session, local) = self.plain_session(shard, &params)?;
        let mut mids = Vec::with_capacity(tracks.len());
        for (i, t) in tracks.iter().enumerate() {
            // "p<n>" is a valid mid for any n.
            let mid = Mid::new(&format!("p{i}")).expect("a short token mid");
            let track = RelayTrack {
                mid,
                kind: t.kind,
                ssrc: t.ssrc,
                payloads: t.payloads.clone(),
                rtx_ssrc: 0,
                rtx: Vec::new(),
                layers: Vec::new(),
                source: (session, mid),
            };
            if let Err(e) = self.relay_attach(session, &track) {
                self.plain_abort(session);
                return Err(e);
            }
            mids.push(mid);
        }
        Ok(PlainIngest {
            session,
            shard,
            local,
            tracks: mids,
        })
    }
}
