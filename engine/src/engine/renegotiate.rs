//! Renegotiation of live sessions: a new offer (JSEP re-offer) or a trickle ICE
//! fragment (RFC 8840; WHIP/WHEP `PATCH`), with forwarding re-wired afterwards.

use rtc_core::media::Mid;
use rtc_core::sdp::IceFragment;
use rtc_core::sdp_api::SdpOffer;

use super::EngineHandle;
use super::registry::{Replies, legs_where};
use crate::api::{EngineError, MediaDesc, Renegotiation, SessionId};
use crate::shard::{Command, SdpChange};

impl EngineHandle {
    /// Applies the peer's new offer to a live session and returns our answer. The
    /// offer may add media sections, remove (reject) sections, and restart ICE (new
    /// `ice-ufrag`/`ice-pwd`); the DTLS association is kept. Afterwards:
    ///
    /// - legs on removed sections end: those forwarding the session's removed tracks to
    ///   others, and those the session received on its removed sections;
    /// - added tracks the session receives are forwarded to every subscriber that
    ///   already receives this session's tracks (in the same room), placed as
    ///   [`EngineHandle::subscribe_tracks`] places them.
    ///
    /// The offer is parsed on the calling thread, negotiated on the session's shard.
    ///
    /// # Errors
    ///
    /// [`EngineError::TooManyMedia`] over the media cap, [`EngineError::Rtc`] for an
    /// offer that does not parse or cannot be negotiated (the session is unchanged),
    /// [`EngineError::UnknownSession`], [`EngineError::SessionPanicked`] (the session is
    /// removed), [`EngineError::Timeout`] / [`EngineError::ShardGone`].
    pub fn renegotiate(&self, id: SessionId, offer: &str) -> Result<Renegotiation, EngineError> {
        let limit = self.inner.limits.max_media;
        let offer = SdpOffer::from_sdp_string(offer).map_err(rtc_core::RtcError::from)?;
        let sections = offer.description().media.len();
        if sections > limit {
            return Err(EngineError::TooManyMedia { sections, limit });
        }
        self.apply_change(id, SdpChange::Offer(Box::new(offer)))
    }

    /// Applies a trickle ICE fragment (`application/trickle-ice-sdpfrag`, RFC 8840) to
    /// a live session: its candidates are added, or, when it carries new credentials,
    /// ICE restarts and [`Renegotiation::fragment`] holds our answer fragment (new
    /// credentials and candidates). Media keeps flowing on the current path until the
    /// peer's checks with the new credentials nominate one.
    ///
    /// # Errors
    ///
    /// [`EngineError::Rtc`] for a fragment that does not parse or does not fit the
    /// session (unknown mid, half of a credential pair, before negotiation), and as
    /// [`EngineError::renegotiate`](EngineHandle::renegotiate).
    pub fn ice_fragment(
        &self,
        id: SessionId,
        fragment: &str,
    ) -> Result<Renegotiation, EngineError> {
        let frag = IceFragment::parse(fragment).map_err(rtc_core::RtcError::from)?;
        self.apply_change(id, SdpChange::IceFragment(Box::new(frag)))
    }

    /// Makes our own offer on a live session (the peer answers with
    /// [`EngineHandle::accept_answer`]): media sections to add (`kind`, our direction),
    /// negotiated sections to remove, and an ICE restart. [`Renegotiation::offer`] holds
    /// it. Media of sections added here is forwarded once the answer is applied; a new
    /// offer replaces one not yet answered.
    ///
    /// # Errors
    ///
    /// [`EngineError::Rtc`] when the offer would change nothing or names an unknown
    /// section, and as [`EngineHandle::renegotiate`].
    pub fn create_offer(
        &self,
        id: SessionId,
        add: &[(rtc_core::media::MediaKind, rtc_core::sdp::Direction)],
        remove: &[Mid],
        ice_restart: bool,
    ) -> Result<Renegotiation, EngineError> {
        let limit = self.inner.limits.max_media;
        let sections = self
            .registry()
            .sessions
            .get(&id)
            .map(|s| s.media.len())
            .ok_or(EngineError::UnknownSession(id))?
            + add.len();
        if sections > limit {
            return Err(EngineError::TooManyMedia { sections, limit });
        }
        self.apply_change(
            id,
            SdpChange::MakeOffer {
                add: add.to_vec(),
                remove: remove.to_vec(),
                ice_restart,
            },
        )
    }

    /// Applies the peer's answer to the offer of [`EngineHandle::create_offer`], then
    /// re-wires forwarding as [`EngineHandle::renegotiate`] does.
    ///
    /// # Errors
    ///
    /// [`EngineError::Rtc`] when no offer awaits an answer or the answer does not fit
    /// it (the pending offer is then dropped), and as [`EngineHandle::renegotiate`].
    pub fn accept_answer(&self, id: SessionId, answer: &str) -> Result<Renegotiation, EngineError> {
        let answer = rtc_core::sdp_api::SdpAnswer::from_sdp_string(answer)
            .map_err(rtc_core::RtcError::from)?;
        self.apply_change(id, SdpChange::Answer(Box::new(answer)))
    }

    fn apply_change(&self, id: SessionId, change: SdpChange) -> Result<Renegotiation, EngineError> {
        let shard = self.session_shard(id)?;
        let before: Vec<MediaDesc> = self
            .registry()
            .sessions
            .get(&id)
            .map(|s| s.media.clone())
            .ok_or(EngineError::UnknownSession(id))?;
        let done = self.call(shard, |reply| Command::Renegotiate { id, change, reply })??;
        let added: Vec<Mid> = done
            .media
            .iter()
            .filter(|m| !before.iter().any(|b| b.mid == m.mid))
            .map(|m| m.mid)
            .collect();
        let removed: Vec<Mid> = before
            .iter()
            .filter(|b| !done.media.iter().any(|m| m.mid == b.mid))
            .map(|b| b.mid)
            .collect();
        // Subscribers of this session and the rooms they receive it in, before the
        // removals below drop their legs.
        let mut fed: Vec<(SessionId, crate::api::RoomId)> = Vec::new();
        let mut replies = Replies::default();
        {
            let mut reg = self.registry();
            for (sub, s) in &reg.sessions {
                for l in s.legs.iter().filter(|l| l.publisher == id) {
                    if !fed.contains(&(*sub, l.room)) {
                        fed.push((*sub, l.room));
                    }
                }
            }
            let Some(s) = reg.sessions.get_mut(&id) else {
                return Err(EngineError::UnknownSession(id));
            };
            s.media = done.media.clone();
            for mid in &removed {
                // Legs forwarding the removed track to others.
                for (sub, sub_mid) in legs_where(&reg, |l| l.publisher == id && l.pub_mid == *mid) {
                    self.remove_leg(&mut reg, sub, sub_mid, &mut replies)?;
                }
                // The leg this session received on the removed section.
                self.remove_leg(&mut reg, id, *mid, &mut replies)?;
            }
        }
        // Shard replies are awaited without the registry lock.
        self.settle(replies)?;
        let inbound: Vec<Mid> = done
            .media
            .iter()
            .filter(|m| added.contains(&m.mid) && m.can_recv())
            .map(|m| m.mid)
            .collect();
        if !inbound.is_empty() {
            for (sub, room) in fed {
                match self.subscribe_tracks(room, sub, id, Some(&inbound)) {
                    // The subscriber or the publication ended meanwhile: nothing to wire.
                    Ok(_)
                    | Err(EngineError::UnknownSession(_) | EngineError::NotInRoom(..))
                    | Err(EngineError::UnknownRoom(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Renegotiation {
            answer: done.answer,
            fragment: done.fragment,
            offer: done.offer,
            media: done.media,
            added,
            removed,
            ice_restarted: done.ice_restarted,
        })
    }
}
