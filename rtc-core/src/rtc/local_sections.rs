//! Our side of the last completed SDP negotiation, kept compactly between negotiations.

use crate::sdp::{MediaSection, SessionDescription};

/// Our media sections of the last completed negotiation (the basis of re-offers and ICE
/// fragments), held as their SDP text: one block of about 1 KiB for an audio section,
/// where the parsed sections took an inline `MediaSection` (672 bytes) plus a dozen
/// small blocks each, for the connection's whole life. Read back (parsed) only by a
/// negotiation.
///
/// A list whose text does not parse back to the very same sections (not expected: the
/// SDP writer and parser are tested to be inverse) is kept parsed, so what reads it
/// back always gets exactly what was stored.
pub(crate) struct LocalSections(Stored);

enum Stored {
    /// The sections as written by `MediaSection`'s `Display` (CRLF-terminated lines).
    Text(Box<str>),
    /// Sections whose text would not read back the same.
    Parsed(Vec<MediaSection>),
}

impl LocalSections {
    /// No sections (before the first negotiation completes). Does not allocate.
    pub(crate) fn new() -> LocalSections {
        LocalSections(Stored::Text(Box::default()))
    }

    /// Stores `sections` (negotiation path: writes and parses them once to check the
    /// text reads back the same).
    pub(crate) fn set(&mut self, sections: Vec<MediaSection>) {
        let text: String = sections.iter().map(ToString::to_string).collect();
        self.0 = if parse_sections(&text).is_some_and(|back| back == sections) {
            Stored::Text(text.into_boxed_str())
        } else {
            Stored::Parsed(sections)
        };
    }

    /// The stored sections (parsed anew from their text: negotiation path only).
    pub(crate) fn get(&self) -> Vec<MediaSection> {
        match &self.0 {
            Stored::Parsed(s) => s.clone(),
            // Stored only after it parsed back to the same sections (`set`): parsing the
            // same text again gives the same result.
            Stored::Text(t) => parse_sections(t).unwrap_or_default(),
        }
    }
}

/// The media sections of `text` (media sections only), parsed under an empty session
/// level; `None` if it does not parse.
fn parse_sections(text: &str) -> Option<Vec<MediaSection>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let mut sdp = SessionDescription::default().to_sdp();
    sdp.push_str(text);
    SessionDescription::parse(&sdp).ok().map(|sd| sd.media)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::MediaKind;
    use crate::sdp::Direction;
    use crate::{Rtc, RtcConfig};
    use std::time::Instant;

    #[test]
    fn sections_read_back_the_same() {
        let now = Instant::now();
        let mut offerer = Rtc::new(now);
        let mut api = offerer.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly);
        api.add_media(MediaKind::Video, Direction::RecvOnly);
        api.add_channel(crate::sctp::ChannelConfig::default())
            .unwrap();
        let (offer, pending) = api.apply().expect("an offer");
        let offer_sections = offer.description().media.clone();
        let mut answerer = RtcConfig::new().set_ice_lite(true).build(now).unwrap();
        let answer = answerer.sdp_api().accept_offer(offer).unwrap();
        let answer_sections = answer.description().media.clone();
        assert_eq!(answerer.local_sections.get(), answer_sections);
        assert!(matches!(answerer.local_sections.0, Stored::Text(_)));
        offerer.sdp_api().accept_answer(pending, answer).unwrap();
        assert_eq!(offerer.local_sections.get(), offer_sections);
        assert!(matches!(offerer.local_sections.0, Stored::Text(_)));

        let mut s = LocalSections::new();
        assert!(s.get().is_empty());
        s.set(answer_sections.clone());
        assert_eq!(s.get(), answer_sections);
    }
}
