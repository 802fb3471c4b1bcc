//! Codec identity, `fmtp` parameters and the codec matching rules used in offer/answer.
//!
//! H.264 profile identification follows RFC 6184 §8.1 (profile-level-id = profile_idc,
//! profile-iop constraint flags, level_idc; Table 5 of that RFC lists which flag patterns
//! select which profile).

use std::fmt;

use super::PayloadType;
use crate::media::Codec;

/// Why an H.264 `profile-level-id` could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileLevelIdError {
    /// Not exactly six characters.
    #[error("profile-level-id must be 6 hex digits")]
    BadLength,
    /// A character is not a hex digit.
    #[error("profile-level-id holds a non-hex character")]
    BadHex,
}

/// H.264 profiles distinguishable from a `profile-level-id` (RFC 6184 Table 5, plus
/// Constrained High from H.264 Annex A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained Baseline.
    ConstrainedBaseline,
    /// Baseline.
    Baseline,
    /// Main.
    Main,
    /// Extended.
    Extended,
    /// High.
    High,
    /// Constrained High.
    ConstrainedHigh,
    /// High 10.
    High10,
    /// High 4:2:2.
    High422,
    /// High 4:4:4 Predictive.
    High444,
    /// High 10 Intra.
    High10Intra,
    /// High 4:2:2 Intra.
    High422Intra,
    /// High 4:4:4 Intra.
    High444Intra,
    /// CAVLC 4:4:4 Intra.
    Cavlc444Intra,
}

/// A parsed H.264 `profile-level-id` (three bytes, written as six hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// `profile-iop`: constraint_set0..5 flags (MSB first) and two reserved zero bits.
    pub profile_iop: u8,
    /// `level_idc` (10 × level number, e.g. 31 for 3.1).
    pub level_idc: u8,
}

// (profile_idc, iop mask, iop value, profile). A pattern bit is "don't care" when its
// mask bit is clear. Bits: cs0=0x80, cs1=0x40, cs2=0x20, cs3=0x10, cs4=0x08, cs5=0x04.
const PROFILE_PATTERNS: [(u8, u8, u8, H264Profile); 15] = [
    (0x42, 0x4F, 0x40, H264Profile::ConstrainedBaseline),
    (0x4D, 0x8F, 0x80, H264Profile::ConstrainedBaseline),
    (0x58, 0xCF, 0xC0, H264Profile::ConstrainedBaseline),
    (0x42, 0x4F, 0x00, H264Profile::Baseline),
    (0x58, 0xCF, 0x80, H264Profile::Baseline),
    (0x4D, 0xAF, 0x00, H264Profile::Main),
    (0x58, 0xCF, 0x00, H264Profile::Extended),
    (0x64, 0xFF, 0x00, H264Profile::High),
    (0x64, 0xFF, 0x0C, H264Profile::ConstrainedHigh),
    (0x6E, 0xFF, 0x00, H264Profile::High10),
    (0x7A, 0xFF, 0x00, H264Profile::High422),
    (0xF4, 0xFF, 0x00, H264Profile::High444),
    (0x6E, 0xFF, 0x10, H264Profile::High10Intra),
    (0x7A, 0xFF, 0x10, H264Profile::High422Intra),
    (0xF4, 0xFF, 0x10, H264Profile::High444Intra),
];

impl ProfileLevelId {
    /// The value RFC 6184 §8.1 says to assume when the parameter is absent
    /// (Baseline, level 1.0: `420010`).
    pub const DEFAULT: ProfileLevelId = ProfileLevelId {
        profile_idc: 0x42,
        profile_iop: 0x00,
        level_idc: 10,
    };

    /// Parses six hex digits (either case).
    pub fn parse(s: &str) -> Result<ProfileLevelId, ProfileLevelIdError> {
        let b = s.as_bytes();
        if b.len() != 6 {
            return Err(ProfileLevelIdError::BadLength);
        }
        let mut out = [0u8; 3];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let s = std::str::from_utf8(pair).map_err(|_| ProfileLevelIdError::BadHex)?;
            if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ProfileLevelIdError::BadHex);
            }
            *o = u8::from_str_radix(s, 16).map_err(|_| ProfileLevelIdError::BadHex)?;
        }
        let [profile_idc, profile_iop, level_idc] = out;
        Ok(ProfileLevelId {
            profile_idc,
            profile_iop,
            level_idc,
        })
    }

    /// The profile these bytes select, or `None` for an unknown combination.
    pub fn profile(&self) -> Option<H264Profile> {
        if self.profile_idc == 0x2C && self.profile_iop == 0x10 {
            return Some(H264Profile::Cavlc444Intra);
        }
        PROFILE_PATTERNS
            .iter()
            .find(|(idc, mask, val, _)| *idc == self.profile_idc && self.profile_iop & mask == *val)
            .map(|(_, _, _, p)| *p)
    }

    /// Whether the level is 1b (signalled as level_idc 11 + constraint_set3 in the
    /// Baseline/Main/Extended profiles, or level_idc 9 elsewhere).
    pub fn is_level_1b(&self) -> bool {
        self.level_idc == 9
            || (self.level_idc == 11
                && self.profile_iop & 0x10 != 0
                && matches!(self.profile_idc, 0x42 | 0x4D | 0x58))
    }

    /// A number that orders levels correctly (1b sorts between 1 and 1.1).
    pub fn level_rank(&self) -> u16 {
        if self.is_level_1b() {
            105
        } else {
            u16::from(self.level_idc) * 10
        }
    }

    /// `self` with its level lowered to `other`'s if `other`'s is lower.
    pub fn with_min_level(&self, other: &ProfileLevelId) -> ProfileLevelId {
        if other.level_rank() >= self.level_rank() {
            return *self;
        }
        let mut out = *self;
        if other.is_level_1b() {
            if matches!(self.profile_idc, 0x42 | 0x4D | 0x58) {
                out.level_idc = 11;
                out.profile_iop |= 0x10;
            } else {
                out.level_idc = 9;
            }
        } else {
            out.level_idc = other.level_idc;
            if matches!(self.profile_idc, 0x42 | 0x4D | 0x58) && out.level_idc == 11 {
                out.profile_iop &= !0x10;
            }
        }
        out
    }
}

impl fmt::Display for ProfileLevelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level_idc
        )
    }
}

/// `a=fmtp` parameters: the keys WebRTC negotiates are typed, all others kept in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormatParams {
    /// Opus `minptime` (ms).
    pub minptime: Option<u32>,
    /// Opus `useinbandfec`.
    pub useinbandfec: Option<bool>,
    /// Opus `stereo`.
    pub stereo: Option<bool>,
    /// Opus `sprop-stereo`.
    pub sprop_stereo: Option<bool>,
    /// Opus `usedtx`.
    pub usedtx: Option<bool>,
    /// Opus `maxaveragebitrate` (bit/s).
    pub maxaveragebitrate: Option<u32>,
    /// H.264 `profile-level-id`.
    pub profile_level_id: Option<ProfileLevelId>,
    /// H.264 `packetization-mode` (0, 1 or 2).
    pub packetization_mode: Option<u8>,
    /// H.264 `level-asymmetry-allowed`.
    pub level_asymmetry_allowed: Option<bool>,
    /// VP9 `profile-id`.
    pub profile_id: Option<u8>,
    /// AV1 `profile`.
    pub profile: Option<u8>,
    /// AV1 `level-idx`.
    pub level_idx: Option<u8>,
    /// AV1 `tier`.
    pub tier: Option<u8>,
    /// RTX `apt` (associated payload type).
    pub apt: Option<u8>,
    /// RTX `rtx-time`/`repair-window` (ms / µs as the peer wrote it).
    pub repair_window: Option<u32>,
    /// Other parameters in order: `(key, value)`; value `None` for bare tokens such as
    /// telephone-event's `0-16` or RED's `111/111`.
    pub unknown: Vec<(String, Option<String>)>,
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    }
}

impl FormatParams {
    /// Parses the text after `a=fmtp:<pt> ` (`;`-separated `key=value` pairs). Never
    /// fails: values that do not fit a typed key are kept in [`FormatParams::unknown`].
    pub fn parse(s: &str) -> FormatParams {
        let mut out = FormatParams::default();
        for part in s.split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            if !value.is_some_and(|v| out.set_known(key, v)) {
                out.unknown.push((key.to_owned(), value.map(str::to_owned)));
            }
        }
        out
    }

    // Stores a known key; false when the key is unknown or the value does not parse.
    fn set_known(&mut self, key: &str, v: &str) -> bool {
        let k = key.to_ascii_lowercase();
        match k.as_str() {
            "minptime" => v.parse().ok().map(|x| self.minptime = Some(x)).is_some(),
            "useinbandfec" => parse_bool(v).map(|x| self.useinbandfec = Some(x)).is_some(),
            "stereo" => parse_bool(v).map(|x| self.stereo = Some(x)).is_some(),
            "sprop-stereo" => parse_bool(v).map(|x| self.sprop_stereo = Some(x)).is_some(),
            "usedtx" => parse_bool(v).map(|x| self.usedtx = Some(x)).is_some(),
            "maxaveragebitrate" => v
                .parse()
                .ok()
                .map(|x| self.maxaveragebitrate = Some(x))
                .is_some(),
            "profile-level-id" => ProfileLevelId::parse(v)
                .ok()
                .map(|x| self.profile_level_id = Some(x))
                .is_some(),
            "packetization-mode" => v
                .parse()
                .ok()
                .map(|x| self.packetization_mode = Some(x))
                .is_some(),
            "level-asymmetry-allowed" => parse_bool(v)
                .map(|x| self.level_asymmetry_allowed = Some(x))
                .is_some(),
            "profile-id" => v.parse().ok().map(|x| self.profile_id = Some(x)).is_some(),
            "profile" => v.parse().ok().map(|x| self.profile = Some(x)).is_some(),
            "level-idx" => v.parse().ok().map(|x| self.level_idx = Some(x)).is_some(),
            "tier" => v.parse().ok().map(|x| self.tier = Some(x)).is_some(),
            "apt" => v.parse().ok().map(|x| self.apt = Some(x)).is_some(),
            "repair-window" => v
                .parse()
                .ok()
                .map(|x| self.repair_window = Some(x))
                .is_some(),
            _ => false,
        }
    }

    /// Whether no parameter is set (no `a=fmtp` line is written then).
    pub fn is_empty(&self) -> bool {
        *self == FormatParams::default()
    }
}

impl fmt::Display for FormatParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if first {
                first = false;
                Ok(())
            } else {
                f.write_str(";")
            }
        };
        let b = |x: bool| u8::from(x);
        macro_rules! kv {
            ($field:expr, $key:literal, $conv:expr) => {
                if let Some(v) = $field {
                    sep(f)?;
                    write!(f, concat!($key, "={}"), $conv(v))?;
                }
            };
        }
        let id = |x| x;
        kv!(self.minptime, "minptime", id);
        kv!(self.useinbandfec, "useinbandfec", b);
        kv!(self.stereo, "stereo", b);
        kv!(self.sprop_stereo, "sprop-stereo", b);
        kv!(self.usedtx, "usedtx", b);
        kv!(self.maxaveragebitrate, "maxaveragebitrate", id);
        kv!(self.level_asymmetry_allowed, "level-asymmetry-allowed", b);
        kv!(self.packetization_mode, "packetization-mode", |x: u8| {
            u32::from(x)
        });
        kv!(
            self.profile_level_id,
            "profile-level-id",
            |x: ProfileLevelId| x
        );
        kv!(self.profile_id, "profile-id", |x: u8| u32::from(x));
        kv!(self.profile, "profile", |x: u8| u32::from(x));
        kv!(self.level_idx, "level-idx", |x: u8| u32::from(x));
        kv!(self.tier, "tier", |x: u8| u32::from(x));
        kv!(self.apt, "apt", |x: u8| u32::from(x));
        kv!(self.repair_window, "repair-window", id);
        for (k, v) in &self.unknown {
            sep(f)?;
            match v {
                Some(v) => write!(f, "{k}={v}")?,
                None => f.write_str(k)?,
            }
        }
        Ok(())
    }
}

/// The H.264 profile of a payload (absent `profile-level-id` means [`ProfileLevelId::DEFAULT`]).
fn h264_profile(p: &PayloadType) -> Option<H264Profile> {
    p.fmtp
        .profile_level_id
        .unwrap_or(ProfileLevelId::DEFAULT)
        .profile()
}

/// Whether a local codec configuration and a remote payload type describe the same codec
/// for offer/answer purposes.
///
/// - names must be equal (case-insensitive) and clock rates equal; channel counts equal
///   (absent = 1);
/// - Opus must be `opus/48000/2` on both sides;
/// - VP9 `profile-id` and AV1 `profile` must be equal (absent = 0);
/// - H.264: `packetization-mode` equal (absent = 0) and the same profile (RFC 6184 §8.1;
///   the level is negotiated separately: the answer carries the lower of the two levels
///   unless both sides allow level asymmetry, RFC 6184 §8.2.2).
///
/// RTX payloads match on name and clock rate only; whether their `apt` points at a
/// matched codec is decided by the offer/answer code (`sdp::jsep`).
pub fn codec_matches(local: &PayloadType, remote: &PayloadType) -> bool {
    if !local.codec.same_as(&remote.codec) || local.clock_rate != remote.clock_rate {
        return false;
    }
    match local.codec {
        Codec::Opus => {
            local.clock_rate == 48000 && local.channels == Some(2) && remote.channels == Some(2)
        }
        Codec::Vp9 => local.fmtp.profile_id.unwrap_or(0) == remote.fmtp.profile_id.unwrap_or(0),
        Codec::Av1 => local.fmtp.profile.unwrap_or(0) == remote.fmtp.profile.unwrap_or(0),
        Codec::H264 => {
            let pm_ok = local.fmtp.packetization_mode.unwrap_or(0)
                == remote.fmtp.packetization_mode.unwrap_or(0);
            pm_ok && h264_profile(local).is_some() && h264_profile(local) == h264_profile(remote)
        }
        _ => local.channels.unwrap_or(1) == remote.channels.unwrap_or(1),
    }
}

/// The `profile-level-id` an H.264 answer should carry (RFC 6184 §8.2.2): the local profile
/// with the lower of the two levels, unless both sides signal
/// `level-asymmetry-allowed=1`, in which case the local level is kept.
pub fn h264_answer_profile_level_id(local: &PayloadType, remote: &PayloadType) -> ProfileLevelId {
    let l = local
        .fmtp
        .profile_level_id
        .unwrap_or(ProfileLevelId::DEFAULT);
    let r = remote
        .fmtp
        .profile_level_id
        .unwrap_or(ProfileLevelId::DEFAULT);
    let asym = local.fmtp.level_asymmetry_allowed == Some(true)
        && remote.fmtp.level_asymmetry_allowed == Some(true);
    if asym { l } else { l.with_min_level(&r) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264(plid: &str, pm: Option<u8>) -> PayloadType {
        let mut p = PayloadType::new(102, Codec::H264, 90000, None);
        p.fmtp.profile_level_id = Some(ProfileLevelId::parse(plid).unwrap());
        p.fmtp.packetization_mode = pm;
        p
    }

    #[test]
    fn profile_table() {
        use H264Profile::*;
        let cases = [
            ("42e01f", Some(ConstrainedBaseline)),
            ("42C02A", Some(ConstrainedBaseline)),
            ("4de01f", Some(ConstrainedBaseline)),
            ("58f01f", Some(ConstrainedBaseline)),
            ("42001f", Some(Baseline)),
            ("42a01f", Some(Baseline)),
            ("58a01f", Some(Baseline)),
            ("4d001f", Some(Main)),
            ("4d401f", Some(Main)),
            ("4d201f", None),
            ("58001f", Some(Extended)),
            ("640c1f", Some(ConstrainedHigh)),
            ("64001f", Some(High)),
            ("6e001f", Some(High10)),
            ("7a001f", Some(High422)),
            ("f4001f", Some(High444)),
            ("6e101f", Some(High10Intra)),
            ("7a101f", Some(High422Intra)),
            ("f4101f", Some(High444Intra)),
            ("2c101f", Some(Cavlc444Intra)),
            ("64401f", None),
            ("42011f", None),
            ("00001f", None),
        ];
        for (s, want) in cases {
            assert_eq!(ProfileLevelId::parse(s).unwrap().profile(), want, "{s}");
        }
    }

    #[test]
    fn profile_level_id_parse_errors() {
        assert_eq!(
            ProfileLevelId::parse("42e01"),
            Err(ProfileLevelIdError::BadLength)
        );
        assert_eq!(
            ProfileLevelId::parse("42e0zz"),
            Err(ProfileLevelIdError::BadHex)
        );
        assert_eq!(
            ProfileLevelId::parse("+2e01f"),
            Err(ProfileLevelIdError::BadHex)
        );
        assert_eq!(
            ProfileLevelId::parse("ééé"),
            Err(ProfileLevelIdError::BadHex)
        );
        let p = ProfileLevelId::parse("42E01F").unwrap();
        assert_eq!(p.to_string(), "42e01f");
        assert_eq!(p.level_idc, 0x1f);
    }

    #[test]
    fn h264_matching_table() {
        let cases = [
            (("42e01f", Some(1)), ("42e01f", Some(1)), true),
            (("42e01f", Some(1)), ("42e034", Some(1)), true),
            (("42e01f", Some(1)), ("42001f", Some(1)), false),
            (("42e01f", Some(1)), ("42e01f", None), false),
            (("42e01f", None), ("42e01f", Some(0)), true),
            (("42e01f", Some(1)), ("4de01f", Some(1)), true),
            (("4d001f", Some(1)), ("4d0032", Some(1)), true),
            (("4d001f", Some(1)), ("64001f", Some(1)), false),
            (("64001f", Some(1)), ("640c1f", Some(1)), false),
            (("42001f", Some(1)), ("42001f", Some(1)), true),
        ];
        for ((lp, lm), (rp, rm), want) in cases {
            assert_eq!(
                codec_matches(&h264(lp, lm), &h264(rp, rm)),
                want,
                "{lp}/{lm:?} vs {rp}/{rm:?}"
            );
        }
        // Absent profile-level-id means Baseline level 1.0.
        let mut bare = PayloadType::new(100, Codec::H264, 90000, None);
        assert!(codec_matches(&h264("42000a", None), &bare));
        bare.fmtp.packetization_mode = Some(1);
        assert!(!codec_matches(&h264("42e01f", Some(1)), &bare));
    }

    #[test]
    fn h264_level_negotiation() {
        let mut l = h264("42e01f", Some(1));
        let mut r = h264("42e00d", Some(1));
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "42e00d");
        r.fmtp.level_asymmetry_allowed = Some(true);
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "42e00d");
        l.fmtp.level_asymmetry_allowed = Some(true);
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "42e01f");
        let l = h264("42e01f", Some(1));
        let r = h264("42f00b", Some(1)); // level 1b
        assert!(ProfileLevelId::parse("42f00b").unwrap().is_level_1b());
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "42f00b");
        let l = h264("64001f", Some(1));
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "640009");
        let r = h264("640034", Some(1));
        assert_eq!(h264_answer_profile_level_id(&l, &r).to_string(), "64001f");
    }

    #[test]
    fn other_codecs() {
        let opus = |ch| PayloadType::new(111, Codec::Opus, 48000, ch);
        assert!(codec_matches(&opus(Some(2)), &opus(Some(2))));
        assert!(!codec_matches(&opus(Some(2)), &opus(None)));
        let mut a = PayloadType::new(98, Codec::Vp9, 90000, None);
        let mut b = a.clone();
        b.fmtp.profile_id = Some(0);
        assert!(codec_matches(&a, &b));
        b.fmtp.profile_id = Some(2);
        assert!(!codec_matches(&a, &b));
        a.fmtp.profile_id = Some(2);
        assert!(codec_matches(&a, &b));
        let mut av1 = PayloadType::new(45, Codec::Av1, 90000, None);
        let av1b = av1.clone();
        assert!(codec_matches(&av1, &av1b));
        av1.fmtp.profile = Some(1);
        assert!(!codec_matches(&av1, &av1b));
        let vp8 = PayloadType::new(96, Codec::Vp8, 90000, None);
        let vp8b = PayloadType::new(120, Codec::from_name("vp8"), 90000, None);
        assert!(codec_matches(&vp8, &vp8b));
        assert!(!codec_matches(&vp8, &av1b));
        let x = PayloadType::new(120, Codec::Other("X-Foo".into()), 8000, None);
        let y = PayloadType::new(121, Codec::from_name("x-foo"), 8000, Some(1));
        assert!(codec_matches(&x, &y));
    }

    #[test]
    fn fmtp_parse_and_write() {
        let f = FormatParams::parse("minptime=10;useinbandfec=1; stereo=yes;0-16;x=a=b");
        assert_eq!(f.minptime, Some(10));
        assert_eq!(f.useinbandfec, Some(true));
        assert_eq!(f.stereo, None);
        assert_eq!(
            f.unknown,
            vec![
                ("stereo".to_string(), Some("yes".to_string())),
                ("0-16".to_string(), None),
                ("x".to_string(), Some("a=b".to_string())),
            ]
        );
        assert_eq!(
            f.to_string(),
            "minptime=10;useinbandfec=1;stereo=yes;0-16;x=a=b"
        );
        let h = FormatParams::parse(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        );
        assert_eq!(
            h.to_string(),
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        );
        assert_eq!(FormatParams::parse("apt=96").apt, Some(96));
        assert!(FormatParams::parse(" ; ").is_empty());
    }
}
