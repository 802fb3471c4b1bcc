//! `rtcctl`: command-line client of the rtc-engine control socket.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use control::{
    ChannelPayload, ChannelRef, ChannelSend, ClientError, ControlClient, DirectParams, EngineStats,
    EventKind, EventsSubscribe, KeyframeRequest, Publish, Request, Response, RoomId, RoomRef,
    SessionCreate, SessionId, SessionRef, SessionSetup, ShardId, ShardRef, Subscribe, TrackId,
    TrackPreference,
};
use tools::ctl::{self, human, term, top};

mod plain;
mod relay;
use plain::{PlainCmd, plain_request};
use relay::{RelayCmd, relay_request};

#[derive(Parser, Debug)]
#[command(
    name = "rtcctl",
    version,
    about = "Control a running rtc-engine over its Unix socket"
)]
struct Cli {
    /// Control socket [default: $XDG_RUNTIME_DIR/rtc-engine/control.sock or
    /// /run/rtc-engine/control.sock].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print responses and events as JSON (one object per line).
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for a response (0: no limit).
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sessions (peer connections).
    #[command(subcommand)]
    Session(SessionCmd),
    /// Rooms (forwarding groups).
    #[command(subcommand)]
    Room(RoomCmd),
    /// Publish a session's tracks in a room.
    Publish {
        /// Publishing session.
        session: u64,
        /// Room.
        room: String,
        /// Only this track (repeatable).
        #[arg(long = "track", value_name = "TRACK")]
        tracks: Vec<String>,
    },
    /// Forward a publisher's tracks to a subscriber.
    Subscribe(SubArgs),
    /// Stop forwarding a publisher's tracks to a subscriber.
    Unsubscribe(SubArgs),
    /// Subscriber tracks.
    #[command(subcommand)]
    Track(TrackCmd),
    /// Keyframe requests.
    #[command(subcommand)]
    Keyframe(KeyframeCmd),
    /// Engine-wide commands.
    #[command(subcommand)]
    Engine(EngineCmd),
    /// Shards (one per core).
    #[command(subcommand)]
    Shard(ShardCmd),
    /// Stream events until interrupted (or --count are printed).
    Events {
        /// Only this kind (repeatable): session.state, track.added, track.removed,
        /// keyframe.requested, session.failed, session.panicked, channel.message.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Data channels.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Relays to other engines (one DTLS-SRTP session per engine pair, many tracks).
    #[command(subcommand)]
    Relay(RelayCmd),
    /// Plain RTP/SRTP out (recording with ffmpeg) and in (from ffmpeg, GStreamer).
    #[command(subcommand)]
    Plain(PlainCmd),
    /// Live per-shard table, refreshed every second; q or Ctrl-C quits.
    Top {
        /// Print one frame (rates over --interval-ms) and exit.
        #[arg(long)]
        once: bool,
        /// Refresh interval in milliseconds.
        #[arg(long, default_value_t = 1000, value_name = "MS")]
        interval_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum SessionCmd {
    /// Create a session from an SDP offer (prints the answer) or direct parameters.
    Create {
        /// File holding the remote SDP offer ("-": stdin).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "direct_file",
            required_unless_present = "direct_file"
        )]
        offer_file: Option<PathBuf>,
        /// File holding direct parameters as JSON ("-": stdin), see docs/control-protocol.md.
        #[arg(long, value_name = "FILE")]
        direct_file: Option<PathBuf>,
        /// Join this room.
        #[arg(long)]
        room: Option<String>,
        /// Place on this shard.
        #[arg(long)]
        shard: Option<u32>,
        /// Close the session when this control connection ends (i.e. when rtcctl exits).
        #[arg(long)]
        reap_on_disconnect: bool,
        /// Write the SDP answer to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        answer_file: Option<PathBuf>,
    },
    /// Close a session.
    Close {
        /// Session.
        session: u64,
    },
    /// Show a session's statistics.
    Stats {
        /// Session.
        session: u64,
    },
    /// Renegotiate a live session with the peer's new SDP offer (prints our answer).
    Renegotiate {
        /// Session.
        session: u64,
        /// File holding the new SDP offer ("-": stdin).
        #[arg(long, value_name = "FILE")]
        offer_file: PathBuf,
        /// Write the SDP answer to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        answer_file: Option<PathBuf>,
    },
    /// Apply a trickle ICE fragment (application/trickle-ice-sdpfrag): candidates, or
    /// new credentials for an ICE restart (prints the engine's fragment).
    Ice {
        /// Session.
        session: u64,
        /// File holding the fragment ("-": stdin).
        #[arg(long, value_name = "FILE")]
        fragment_file: PathBuf,
        /// Write the engine's fragment (after an ICE restart) to this file.
        #[arg(long, value_name = "FILE")]
        answer_file: Option<PathBuf>,
    },
    /// Make the engine offer on a live session (prints the offer; answer with
    /// `session answer`).
    Offer {
        /// Session.
        session: u64,
        /// Add a media section, `KIND:DIRECTION` (e.g. `video:sendonly`, the engine's
        /// direction).
        #[arg(long = "add", value_name = "KIND:DIRECTION")]
        add: Vec<String>,
        /// Remove a track (mid).
        #[arg(long = "remove", value_name = "TRACK")]
        remove: Vec<String>,
        /// Restart ICE.
        #[arg(long)]
        ice_restart: bool,
        /// Write the SDP offer to this file instead of printing it.
        #[arg(long, value_name = "FILE")]
        offer_file: Option<PathBuf>,
    },
    /// Give the peer's SDP answer to the engine's pending `session offer`.
    Answer {
        /// Session.
        session: u64,
        /// File holding the SDP answer ("-": stdin).
        #[arg(long, value_name = "FILE")]
        answer_file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RoomCmd {
    /// Create a room.
    Create {
        /// Room name.
        room: String,
    },
    /// Close a room.
    Close {
        /// Room name.
        room: String,
    },
    /// List rooms.
    List,
}

#[derive(Args, Debug)]
struct SubArgs {
    /// Receiving session.
    subscriber: u64,
    /// Publishing session.
    publisher: u64,
    /// Only this track (repeatable).
    #[arg(long = "track", value_name = "TRACK")]
    tracks: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum TrackCmd {
    /// Limit what a subscriber track forwards (simulcast layer, temporal layer, pause).
    SetPreference {
        /// Subscribing session.
        session: u64,
        /// The subscriber's track.
        track: String,
        /// Highest spatial layer, 0..=2.
        #[arg(long)]
        max_layer: Option<u8>,
        /// Highest temporal layer, 0..=3.
        #[arg(long)]
        max_temporal: Option<u8>,
        /// Forward nothing.
        #[arg(long)]
        paused: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeyframeCmd {
    /// Ask a publisher for a keyframe (PLI/FIR).
    Request {
        /// Publishing session.
        session: u64,
        /// Only this track.
        #[arg(long)]
        track: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum EngineCmd {
    /// Engine and per-shard counters.
    Stats,
}

#[derive(Subcommand, Debug)]
enum ShardCmd {
    /// List shards.
    List,
    /// Stop placing new sessions on a shard.
    Drain {
        /// Shard number.
        shard: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ChannelCmd {
    /// Send a message on a session's data channel.
    Send {
        /// Session.
        session: u64,
        /// Channel: stream id (number) or label.
        channel: String,
        /// Text message.
        #[arg(long, conflicts_with_all = ["file", "b64"], required_unless_present_any = ["file", "b64"])]
        text: Option<String>,
        /// Send this file's bytes as a binary message ("-": stdin).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Binary message given as base64.
        #[arg(long, value_name = "BASE64", conflicts_with = "file")]
        b64: Option<String>,
    },
}

/// Exit status: 1 the server answered with an error, 3 could not talk to the server,
/// 4 bad local input (unreadable file). clap uses 2 for usage errors.
const EXIT_SERVER: u8 = 1;
const EXIT_CONNECT: u8 = 3;
const EXIT_INPUT: u8 = 4;

struct Failure {
    code: u8,
    msg: String,
    server: Option<control::ControlError>,
}

impl Failure {
    fn input(msg: String) -> Self {
        Failure {
            code: EXIT_INPUT,
            msg,
            server: None,
        }
    }

    /// A malformed argument clap cannot check (exit 2, as clap's usage errors).
    fn usage(msg: String) -> Self {
        Failure {
            code: 2,
            msg,
            server: None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server(s) => Failure {
                code: EXIT_SERVER,
                msg: s.to_string(),
                server: Some(s),
            },
            other => Failure {
                code: EXIT_CONNECT,
                msg: other.to_string(),
                server: None,
            },
        }
    }
}

fn read_input(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| Failure::input(format!("stdin: {e}")))?;
        return Ok(v);
    }
    std::fs::read(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

fn read_text(path: &PathBuf) -> Result<String, Failure> {
    String::from_utf8(read_input(path)?)
        .map_err(|_| Failure::input(format!("{}: not UTF-8", path.display())))
}

fn tracks(v: Vec<String>) -> Option<Vec<TrackId>> {
    if v.is_empty() {
        None
    } else {
        Some(v.into_iter().map(TrackId).collect())
    }
}

/// Build the request for a one-shot command (`None` for events/top).
fn build_request(cmd: &Cmd) -> Result<Option<Request>, Failure> {
    Ok(Some(match cmd {
        Cmd::Session(SessionCmd::Create {
            offer_file,
            direct_file,
            room,
            shard,
            reap_on_disconnect,
            ..
        }) => {
            let setup = match (offer_file, direct_file) {
                (Some(f), _) => SessionSetup::Offer(read_text(f)?),
                (None, Some(f)) => {
                    let text = read_text(f)?;
                    let d: DirectParams = serde_json::from_str(&text)
                        .map_err(|e| Failure::input(format!("{}: {e}", f.display())))?;
                    SessionSetup::Direct(d)
                }
                (None, None) => {
                    return Err(Failure::input("give --offer-file or --direct-file".into()));
                }
            };
            Request::SessionCreate(SessionCreate {
                setup,
                room: room.clone().map(RoomId),
                shard: shard.map(ShardId),
                reap_on_disconnect: *reap_on_disconnect,
            })
        }
        Cmd::Session(SessionCmd::Close { session }) => Request::SessionClose(SessionRef {
            session: SessionId(*session),
        }),
        Cmd::Session(SessionCmd::Renegotiate {
            session,
            offer_file,
            ..
        }) => Request::SessionRenegotiate(control::SessionRenegotiate {
            session: SessionId(*session),
            offer: read_text(offer_file)?,
        }),
        Cmd::Session(SessionCmd::Ice {
            session,
            fragment_file,
            ..
        }) => Request::SessionIce(control::SessionIce {
            session: SessionId(*session),
            fragment: read_text(fragment_file)?,
        }),
        Cmd::Session(SessionCmd::Offer {
            session,
            add,
            remove,
            ice_restart,
            ..
        }) => {
            let mut media = Vec::new();
            for a in add {
                let parsed = a.split_once(':').and_then(|(k, d)| {
                    let kind = match k {
                        "audio" => control::MediaKind::Audio,
                        "video" => control::MediaKind::Video,
                        _ => return None,
                    };
                    let direction = match d {
                        "sendrecv" => control::MediaDirection::Sendrecv,
                        "sendonly" => control::MediaDirection::Sendonly,
                        "recvonly" => control::MediaDirection::Recvonly,
                        "inactive" => control::MediaDirection::Inactive,
                        _ => return None,
                    };
                    Some(control::OfferMedia { kind, direction })
                });
                match parsed {
                    Some(m) => media.push(m),
                    None => {
                        return Err(Failure::usage(format!(
                            "--add {a:?}: want KIND:DIRECTION, e.g. video:sendonly"
                        )));
                    }
                }
            }
            Request::SessionOffer(control::SessionOffer {
                session: SessionId(*session),
                add: media,
                remove: remove.iter().map(|t| TrackId(t.clone())).collect(),
                ice_restart: *ice_restart,
            })
        }
        Cmd::Session(SessionCmd::Answer {
            session,
            answer_file,
        }) => Request::SessionAnswer(control::SessionAnswer {
            session: SessionId(*session),
            answer: read_text(answer_file)?,
        }),
        Cmd::Session(SessionCmd::Stats { session }) => Request::SessionStats(SessionRef {
            session: SessionId(*session),
        }),
        Cmd::Room(RoomCmd::Create { room }) => Request::RoomCreate(RoomRef {
            room: RoomId(room.clone()),
        }),
        Cmd::Room(RoomCmd::Close { room }) => Request::RoomClose(RoomRef {
            room: RoomId(room.clone()),
        }),
        Cmd::Room(RoomCmd::List) => Request::RoomList,
        Cmd::Publish {
            session,
            room,
            tracks: t,
        } => Request::Publish(Publish {
            session: SessionId(*session),
            room: RoomId(room.clone()),
            tracks: tracks(t.clone()),
        }),
        Cmd::Subscribe(a) => Request::Subscribe(Subscribe {
            subscriber: SessionId(a.subscriber),
            publisher: SessionId(a.publisher),
            tracks: tracks(a.tracks.clone()),
        }),
        Cmd::Unsubscribe(a) => Request::Unsubscribe(Subscribe {
            subscriber: SessionId(a.subscriber),
            publisher: SessionId(a.publisher),
            tracks: tracks(a.tracks.clone()),
        }),
        Cmd::Keyframe(KeyframeCmd::Request { session, track }) => {
            Request::KeyframeRequest(KeyframeRequest {
                session: SessionId(*session),
                track: track.clone().map(TrackId),
            })
        }
        Cmd::Track(TrackCmd::SetPreference {
            session,
            track,
            max_layer,
            max_temporal,
            paused,
        }) => Request::TrackSetPreference(TrackPreference {
            session: SessionId(*session),
            track: TrackId(track.clone()),
            max_layer: *max_layer,
            max_temporal: *max_temporal,
            paused: *paused,
        }),
        Cmd::Relay(r) => relay_request(r)?,
        Cmd::Plain(p) => plain_request(p)?,
        Cmd::Engine(EngineCmd::Stats) => Request::EngineStats,
        Cmd::Shard(ShardCmd::List) => Request::ShardList,
        Cmd::Shard(ShardCmd::Drain { shard }) => Request::ShardDrain(ShardRef {
            shard: ShardId(*shard),
        }),
        Cmd::Channel(ChannelCmd::Send {
            session,
            channel,
            text,
            file,
            b64,
        }) => {
            let payload = match (text, file, b64) {
                (Some(t), _, _) => ChannelPayload::Text(t.clone()),
                (None, Some(f), _) => ChannelPayload::Binary(read_input(f)?),
                (None, None, Some(b)) => {
                    // Let the protocol layer validate the base64 (same rules as the server).
                    let v = serde_json::json!({"session": session, "channel": 0, "data_b64": b});
                    let c: ChannelSend = serde_json::from_value(v)
                        .map_err(|e| Failure::input(format!("--b64: {e}")))?;
                    c.payload
                }
                (None, None, None) => {
                    return Err(Failure::input("give --text, --file or --b64".into()));
                }
            };
            let channel = match channel.parse::<u16>() {
                Ok(id) => ChannelRef::Id(id),
                Err(_) => ChannelRef::Label(channel.clone()),
            };
            Request::ChannelSend(ChannelSend {
                session: SessionId(*session),
                channel,
                payload,
            })
        }
        Cmd::Events { .. } | Cmd::Top { .. } => return Ok(None),
    }))
}

fn connect(cli: &Cli) -> Result<ControlClient, Failure> {
    let path = cli.socket.clone().unwrap_or_else(ctl::default_socket);
    let mut c = ControlClient::connect(&path).map_err(|e| Failure {
        code: EXIT_CONNECT,
        msg: format!("{}: {e}", path.display()),
        server: None,
    })?;
    if cli.timeout > 0 {
        c.set_timeout(Some(Duration::from_secs(cli.timeout)));
    }
    Ok(c)
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("rtcctl: cannot print JSON: {e}"),
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    if let Some(req) = build_request(&cli.cmd)? {
        let mut c = connect(cli)?;
        let resp = c.request(req)?;
        let answer_file = match &cli.cmd {
            Cmd::Session(
                SessionCmd::Create { answer_file, .. }
                | SessionCmd::Renegotiate { answer_file, .. }
                | SessionCmd::Ice { answer_file, .. }
                | SessionCmd::Offer {
                    offer_file: answer_file,
                    ..
                },
            ) => answer_file.clone(),
            Cmd::Plain(p) => p.sdp_file().cloned(),
            _ => None,
        };
        let mut resp = resp;
        let written = match &mut resp {
            Response::SessionCreated(sc) => sc.answer.as_ref(),
            Response::Renegotiated(r) => r
                .answer
                .as_ref()
                .or(r.fragment.as_ref())
                .or(r.offer.as_ref()),
            Response::PlainEgressed(p) => Some(&p.sdp),
            Response::PlainIngested(p) => Some(&p.sdp),
            _ => None,
        };
        if let (Some(f), Some(a)) = (&answer_file, written) {
            std::fs::write(f, a.as_bytes())
                .map_err(|e| Failure::input(format!("{}: {e}", f.display())))?;
            match &mut resp {
                Response::SessionCreated(sc) => sc.answer = None,
                Response::Renegotiated(r) => {
                    r.answer = None;
                    r.fragment = None;
                    r.offer = None;
                }
                Response::PlainEgressed(p) => p.sdp.clear(),
                Response::PlainIngested(p) => p.sdp.clear(),
                _ => {}
            }
        }
        if cli.json {
            print_json(&resp);
        } else {
            print!("{}", human::render(&resp));
        }
        return Ok(());
    }
    match &cli.cmd {
        Cmd::Events { kinds, count } => events(cli, kinds, *count),
        Cmd::Top { once, interval_ms } => top_cmd(cli, *once, Duration::from_millis(*interval_ms)),
        _ => Ok(()),
    }
}

fn events(cli: &Cli, kinds: &[String], count: Option<u64>) -> Result<(), Failure> {
    let kinds = if kinds.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for k in kinds {
            v.push(
                EventKind::from_name(k)
                    .ok_or_else(|| Failure::input(format!("unknown event kind `{k}`")))?,
            );
        }
        Some(v)
    };
    let mut c = connect(cli)?;
    c.request(Request::EventsSubscribe(EventsSubscribe { kinds }))?;
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while count.is_none_or(|n| seen < n) {
        let Some(ev) = c.next_event(None)? else {
            continue;
        };
        let mut out = stdout.lock();
        let r = if cli.json {
            match serde_json::to_string(&ev) {
                Ok(s) => writeln!(out, "{s}"),
                Err(e) => writeln!(out, "{e}"),
            }
        } else {
            writeln!(out, "{}", human::render_event(&ev))
        };
        if r.and_then(|()| out.flush()).is_err() {
            // stdout closed (e.g. piped into `head`): stop quietly.
            return Ok(());
        }
        seen += 1;
    }
    Ok(())
}

fn stats(c: &mut ControlClient) -> Result<EngineStats, Failure> {
    match c.request(Request::EngineStats)? {
        Response::EngineStats(s) => Ok(s),
        _ => Err(Failure {
            code: EXIT_CONNECT,
            msg: "unexpected response to engine.stats".into(),
            server: None,
        }),
    }
}

fn top_cmd(cli: &Cli, once: bool, interval: Duration) -> Result<(), Failure> {
    let interval = interval.max(Duration::from_millis(50));
    let mut c = connect(cli)?;
    let mut prev = stats(&mut c)?;
    let mut t_prev = Instant::now();
    if once {
        std::thread::sleep(interval);
        let cur = stats(&mut c)?;
        let rows = top::rows(&prev, &cur, t_prev.elapsed());
        if cli.json {
            print_json(&rows);
        } else {
            print!("{}", top::render(&cur, &rows));
        }
        return Ok(());
    }
    let raw = term::RawMode::enable();
    let mut stdin_open = true;
    // Hide the cursor while drawing; restored below.
    print!("\x1b[?25l");
    let result = loop {
        let deadline = t_prev + interval;
        let mut quit = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if !stdin_open {
                std::thread::sleep(left);
                break;
            }
            match term::wait_key(left) {
                term::Key::Byte(b'q' | b'Q' | 0x03 | 0x04) => {
                    quit = true;
                    break;
                }
                term::Key::Eof => stdin_open = false,
                _ => {}
            }
        }
        if quit {
            break Ok(());
        }
        let cur = match stats(&mut c) {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let now = Instant::now();
        let rows = top::rows(&prev, &cur, now - t_prev);
        let frame = top::render(&cur, &rows);
        let mut out = std::io::stdout().lock();
        let text = if raw.is_some() {
            frame.replace('\n', "\r\n")
        } else {
            frame
        };
        let _ = write!(out, "\x1b[H\x1b[2J{text}q: quit");
        let _ = out.flush();
        prev = cur;
        t_prev = now;
    };
    drop(raw);
    println!("\x1b[?25h");
    result
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if cli.json
                && let Some(e) = &f.server
            {
                print_json(&serde_json::json!({ "error": e }));
            }
            eprintln!("rtcctl: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}
