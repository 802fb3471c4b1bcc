//! Opus RED (RFC 2198) in negotiation: the option, our RED payload and the answer to an
//! offered one.

use super::*;

/// Whether Opus RED (`red/48000/2`, RFC 2198: each packet carries the previous Opus
/// frames again, so a lost packet is recovered from the next one) is negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpusRed {
    /// RED first in our preference list: a browser that offers it sends RED.
    Prefer,
    /// RED after Opus: negotiated when offered (so RED may be received and sent), but a
    /// browser sends plain Opus.
    Accept,
    /// Never negotiated.
    #[default]
    Off,
}

/// Payload type we offer RED under (what browsers use).
pub const RED_PT: u8 = 63;

/// The primary payload type a RED payload type's `fmtp` names (`111/111`: every block
/// of the same codec), or `None` when the parameter is absent, malformed or mixes codecs.
pub fn red_primary_pt(red: &PayloadType) -> Option<u8> {
    let (list, None) = red.fmtp.unknown.first()? else {
        return None;
    };
    let mut pts = list.split('/').map(|x| x.trim().parse::<u8>().ok());
    let first = pts.next()??;
    for p in pts {
        if p? != first {
            return None;
        }
    }
    (first < 128).then_some(first)
}

pub(super) fn red_payload(pt: u8, primary: u8, channels: Option<u16>) -> PayloadType {
    let mut p = PayloadType::new(pt, Codec::Red, 48000, channels);
    p.fmtp.unknown.push((format!("{primary}/{primary}"), None));
    p
}

impl LocalCodecs {
    /// The default codecs with Opus RED added per `red` (RED under [`RED_PT`], its
    /// blocks Opus 111).
    pub fn with_opus_red(red: OpusRed) -> LocalCodecs {
        let mut c = LocalCodecs::default();
        let cfg = CodecConfig {
            payload: red_payload(RED_PT, 111, Some(2)),
            rtx_pt: None,
        };
        match red {
            OpusRed::Prefer => c.audio.insert(0, cfg),
            OpusRed::Accept => c.audio.push(cfg),
            OpusRed::Off => {}
        }
        c
    }
}

/// Our answer payload for an offered RED payload type: the first offered `red` that
/// matches `local` and whose blocks are an Opus payload type already in `answered`.
pub(super) fn answer_red(
    offer: &MediaSection,
    local: &PayloadType,
    answered: &[PayloadType],
) -> Option<PayloadType> {
    offer.payloads.iter().find_map(|r| {
        if r.codec != Codec::Red
            || !codec_matches(local, r)
            || answered.iter().any(|p| p.pt == r.pt)
        {
            return None;
        }
        let primary = red_primary_pt(r)?;
        answered
            .iter()
            .any(|p| p.pt == primary && p.codec == Codec::Opus)
            .then(|| red_payload(r.pt, primary, r.channels))
    })
}
