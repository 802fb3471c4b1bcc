//! `rtcctl plain ...`: plain RTP/SRTP in and out (the `plain.*` control ops).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use control::{MediaKind, Request, RoomId, SessionId, ShardId, TrackId};

use super::Failure;

/// SRTP keys given on the command line.
#[derive(Args, Debug, Clone)]
pub(crate) struct SrtpArgs {
    /// SRTP suite (AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM, AEAD_AES_256_GCM);
    /// without it the media is plain RTP.
    #[arg(long, requires = "srtp_key")]
    srtp_suite: Option<String>,
    /// Base64 master key ‖ salt of the media (as in an SDES `inline:` value).
    #[arg(long)]
    srtp_key: Option<String>,
    /// Base64 key ‖ salt of the reverse direction (RTCP); default: --srtp-key.
    #[arg(long)]
    srtp_reverse_key: Option<String>,
}

impl SrtpArgs {
    fn params(&self) -> Option<control::PlainSrtp> {
        Some(control::PlainSrtp {
            suite: self.srtp_suite.clone()?,
            key: self.srtp_key.clone()?,
            reverse_key: self.srtp_reverse_key.clone(),
        })
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum PlainCmd {
    /// Sends a room's tracks as plain RTP (or SRTP) to ADDR, track i to PORT + 2 i;
    /// prints the sessions (one per track) and the SDP for the receiver.
    Egress {
        /// The room.
        room: String,
        /// The receiver's IP address.
        #[arg(long)]
        addr: String,
        /// The first track's port.
        #[arg(long)]
        port: u16,
        /// Only this track, as SESSION:TRACK (repeatable; default: all published).
        #[arg(long = "track", value_name = "SESSION:TRACK")]
        tracks: Vec<String>,
        #[command(flatten)]
        srtp: SrtpArgs,
        /// Write the SDP to this file (e.g. for `ffmpeg -i FILE`) instead of printing it.
        #[arg(long)]
        sdp_file: Option<PathBuf>,
    },
    /// Receives plain RTP (or SRTP) from SOURCE as a publisher session; prints the
    /// session, where to send and the SDP.
    Ingest {
        /// The sender's address (ip:port it sends from).
        #[arg(long)]
        source: String,
        /// A track as KIND:SSRC:PT:CODEC/CLOCK, e.g. video:1234:96:VP8/90000 (repeatable).
        #[arg(
            long = "track",
            value_name = "KIND:SSRC:PT:CODEC/CLOCK",
            required = true
        )]
        tracks: Vec<String>,
        /// Publish the tracks in this room (created if missing).
        #[arg(long)]
        room: Option<String>,
        /// Close the session after this long without a packet, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Place the session on this shard.
        #[arg(long)]
        shard: Option<u32>,
        #[command(flatten)]
        srtp: SrtpArgs,
        /// Write the SDP to this file instead of printing it.
        #[arg(long)]
        sdp_file: Option<PathBuf>,
    },
}

impl PlainCmd {
    /// Where the SDP of the answer goes, if to a file.
    pub(crate) fn sdp_file(&self) -> Option<&PathBuf> {
        match self {
            PlainCmd::Egress { sdp_file, .. } | PlainCmd::Ingest { sdp_file, .. } => {
                sdp_file.as_ref()
            }
        }
    }
}

fn track_ref(s: &str) -> Result<control::PlainTrackRef, Failure> {
    let bad = || Failure::input(format!("--track {s:?}: expected SESSION:TRACK"));
    let (session, track) = s.split_once(':').ok_or_else(bad)?;
    Ok(control::PlainTrackRef {
        session: SessionId(session.parse().map_err(|_| bad())?),
        track: TrackId(track.to_owned()),
    })
}

fn ingest_track(s: &str) -> Result<control::PlainIngestTrack, Failure> {
    let bad = || Failure::input(format!("--track {s:?}: expected KIND:SSRC:PT:CODEC/CLOCK"));
    let mut it = s.splitn(4, ':');
    let (Some(kind), Some(ssrc), Some(pt), Some(codec)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(bad());
    };
    let kind = match kind {
        "audio" => MediaKind::Audio,
        "video" => MediaKind::Video,
        _ => return Err(bad()),
    };
    let (codec, clock) = codec.split_once('/').ok_or_else(bad)?;
    Ok(control::PlainIngestTrack {
        kind,
        ssrc: ssrc.parse().map_err(|_| bad())?,
        payloads: vec![control::RelayPayload {
            pt: pt.parse().map_err(|_| bad())?,
            codec: codec.to_owned(),
            clock_rate: clock.parse().map_err(|_| bad())?,
        }],
    })
}

/// The `plain` subcommands' requests.
pub(crate) fn plain_request(c: &PlainCmd) -> Result<Request, Failure> {
    Ok(match c {
        PlainCmd::Egress {
            room,
            addr,
            port,
            tracks,
            srtp,
            ..
        } => Request::PlainEgress(control::PlainEgress {
            room: RoomId(room.clone()),
            tracks: if tracks.is_empty() {
                None
            } else {
                Some(
                    tracks
                        .iter()
                        .map(|t| track_ref(t))
                        .collect::<Result<_, _>>()?,
                )
            },
            addr: addr.clone(),
            port: *port,
            srtp: srtp.params(),
        }),
        PlainCmd::Ingest {
            source,
            tracks,
            room,
            timeout_ms,
            shard,
            srtp,
            ..
        } => Request::PlainIngest(control::PlainIngest {
            source: source.clone(),
            tracks: tracks
                .iter()
                .map(|t| ingest_track(t))
                .collect::<Result<_, _>>()?,
            room: room.clone().map(RoomId),
            srtp: srtp.params(),
            timeout_ms: *timeout_ms,
            shard: shard.map(ShardId),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_specs_parse() {
        let Ok(t) = ingest_track("video:1234:96:VP8/90000") else {
            panic!("valid spec refused")
        };
        assert_eq!(t.kind, MediaKind::Video);
        assert_eq!(t.ssrc, 1234);
        assert_eq!(t.payloads[0].codec, "VP8");
        assert_eq!(t.payloads[0].clock_rate, 90_000);
        assert!(ingest_track("video:x:96:VP8/90000").is_err());
        assert!(ingest_track("text:1:96:VP8/90000").is_err());
        assert!(ingest_track("video:1:96:VP8").is_err());
        let Ok(r) = track_ref("7:1") else {
            panic!("valid ref refused")
        };
        assert_eq!(r.session, SessionId(7));
        assert!(track_ref("7").is_err());
    }
}
