//! `rtcctl relay ...`: relays between engines (the `relay.*` control ops).

use std::path::PathBuf;

use clap::Subcommand;

use control::{Request, SessionId, TrackId};

use super::{Failure, read_text};

#[derive(Subcommand, Debug)]
pub(crate) enum RelayCmd {
    /// The receiving end: prints the invitation (JSON) for `relay connect` on the other
    /// engine.
    Listen {
        /// Keepalive interval, milliseconds.
        #[arg(long)]
        keepalive_ms: Option<u64>,
        /// Silence after which the relay is down, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// The sending end, from the other engine's invitation: prints the answer (JSON) for
    /// `relay accept` there.
    Connect {
        /// File holding the invitation JSON ("-": stdin).
        invite_file: PathBuf,
        /// Keepalive interval, milliseconds.
        #[arg(long)]
        keepalive_ms: Option<u64>,
        /// Silence after which the relay is down, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// Completes the receiving end with the other engine's answer.
    Accept {
        /// The listening relay.
        relay: u64,
        /// File holding the answer JSON ("-": stdin).
        answer_file: PathBuf,
    },
    /// Sends a publisher's track over a relay: prints the track (JSON) for `relay attach`
    /// on the other engine.
    Publish {
        /// The relay.
        relay: u64,
        /// The publishing session.
        session: u64,
        /// Its track.
        track: String,
    },
    /// Takes a relayed track on the receiving end.
    Attach {
        /// The relay.
        relay: u64,
        /// File holding the track JSON ("-": stdin).
        track_file: PathBuf,
    },
    /// Stops sending a relayed track.
    Unpublish {
        /// The relay.
        relay: u64,
        /// The relay's track (`r1`, …).
        relay_track: String,
    },
    /// Closes a relay (both engines report relay.down).
    Close {
        /// The relay.
        relay: u64,
    },
}

/// Parses a JSON file of the relay set-up.
fn read_json<T: serde::de::DeserializeOwned>(f: &PathBuf) -> Result<T, Failure> {
    let text = read_text(f)?;
    serde_json::from_str(&text).map_err(|e| Failure::input(format!("{}: {e}", f.display())))
}

/// The `relay` subcommands' requests.
pub(crate) fn relay_request(c: &RelayCmd) -> Result<Request, Failure> {
    Ok(match c {
        RelayCmd::Listen {
            keepalive_ms,
            timeout_ms,
        } => Request::RelayListen(control::RelayListen {
            keepalive_ms: *keepalive_ms,
            timeout_ms: *timeout_ms,
        }),
        RelayCmd::Connect {
            invite_file,
            keepalive_ms,
            timeout_ms,
        } => Request::RelayConnect(control::RelayConnect {
            invite: read_json(invite_file)?,
            keepalive_ms: *keepalive_ms,
            timeout_ms: *timeout_ms,
        }),
        RelayCmd::Accept { relay, answer_file } => Request::RelayAccept(control::RelayAccept {
            relay: SessionId(*relay),
            answer: read_json(answer_file)?,
        }),
        RelayCmd::Publish {
            relay,
            session,
            track,
        } => Request::RelayPublish(control::RelayPublish {
            relay: SessionId(*relay),
            session: SessionId(*session),
            track: TrackId(track.clone()),
        }),
        RelayCmd::Attach { relay, track_file } => Request::RelayAttach(control::RelayAttach {
            relay: SessionId(*relay),
            track: read_json(track_file)?,
        }),
        RelayCmd::Unpublish { relay, relay_track } => {
            Request::RelayUnpublish(control::RelayTrackRef {
                relay: SessionId(*relay),
                relay_track: TrackId(relay_track.clone()),
            })
        }
        RelayCmd::Close { relay } => Request::RelayClose(control::RelayRef {
            relay: SessionId(*relay),
        }),
    })
}
