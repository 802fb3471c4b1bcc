//! What to run: the [`Config`] of a load test, its signalling [`Mode`] and the errors a
//! run can end with.

use super::*;

/// The sparsest verification sample (`--verify 1/N`): SRTP's rollover-counter estimate
/// and replay window stay valid for gaps far below 2^15 packets.
pub const MAX_VERIFY_EVERY: u16 = 1024;
/// Shortest audio packet interval (Opus's shortest common frame).
pub const MIN_AUDIO_PERIOD: Duration = Duration::from_millis(10);
/// Longest audio packet interval (beyond Opus DTX's 400 ms).
pub const MAX_AUDIO_PERIOD: Duration = Duration::from_millis(2000);

/// Parses `1/N` (or just `N`) into `N`, for `--verify`.
///
/// # Errors
///
/// A message when the text is not of that form or `N` is outside
/// `1..=MAX_VERIFY_EVERY`.
pub fn parse_verify(s: &str) -> Result<u16, String> {
    let n = match s.split_once('/') {
        Some((one, n)) if one.trim() == "1" => n.trim(),
        Some(_) => return Err(format!("--verify wants 1/N, got {s:?}")),
        None => s.trim(),
    };
    match n.parse::<u16>() {
        Ok(n) if (1..=MAX_VERIFY_EVERY).contains(&n) => Ok(n),
        _ => Err(format!(
            "--verify wants 1/N with N in 1..={MAX_VERIFY_EVERY}, got {s:?}"
        )),
    }
}

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadgenError {
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// Signalling failed where the run cannot go on (engine start, first contact).
    #[error("signalling: {0}")]
    Signalling(String),
    /// Local set-up failed (sockets, threads, certificates).
    #[error("setup: {0}")]
    Setup(String),
}

/// Where sessions are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Start an engine in this process with this many shards.
    InProcess {
        /// Engine shards.
        shards: usize,
    },
    /// A running rtc-engine's control socket.
    Control(PathBuf),
    /// WHIP/WHEP against rtc-demo at this base URL (`http://127.0.0.1:8080`).
    Whip(String),
    /// Two running rtc-engines joined by a relay (cascading): publishers and the first
    /// `local_subscribers` subscribers of each room on engine A, the other subscribers
    /// on engine B, receiving A's publishers through the relay. The relay is connected
    /// beforehand (`relay.listen` on B, `relay.connect` on A, `relay.accept` on B); the
    /// load generator relays each publisher's tracks over it (`relay.publish` on A,
    /// `relay.attach` and `publish` of the relay session on B) when B's first subscriber
    /// of the publisher arrives.
    Cascade(Cascade),
}

/// The engines and the relay of [`Mode::Cascade`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cascade {
    /// Engine A's control socket (publishers, local subscribers, the relay's sending end).
    pub a: PathBuf,
    /// Engine B's control socket (remote subscribers, the relay's receiving end).
    pub b: PathBuf,
    /// The relay's session id on A.
    pub relay_a: u64,
    /// The relay's session id on B.
    pub relay_b: u64,
    /// Subscribers per room on engine A; the rest of each room's are on B.
    pub local_subscribers: usize,
}

impl Mode {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Mode::InProcess { .. } => "in-process",
            Mode::Control(_) => "control",
            Mode::Whip(_) => "whip",
            Mode::Cascade(_) => "cascade",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Signalling back-end.
    pub mode: Mode,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Event-loop threads.
    pub threads: usize,
    /// Steady phase (after every peer is set up and connected, or the connect timeout).
    pub duration: Duration,
    /// Peers set up per second (`0.0`: as fast as signalling goes).
    pub ramp: f64,
    /// How long to wait for the last peers to connect after the ramp.
    pub connect_timeout: Duration,
    /// Send video.
    pub video: bool,
    /// Send audio.
    pub audio: bool,
    /// Video bitrate per publisher, kbit/s.
    pub video_kbps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Seconds between keyframes.
    pub keyframe_interval: f64,
    /// Audio payload bytes per packet.
    pub audio_bytes: usize,
    /// Time between audio packets (default 20 ms; 400 ms is Opus DTX in silence).
    pub audio_period: Duration,
    /// Room name prefix (rooms are `{prefix}-{index}`).
    pub room_prefix: String,
    /// Allow non-loopback signalling targets and media addresses.
    pub allow_remote: bool,
    /// Bearer token for WHIP/WHEP.
    pub token: Option<String>,
    /// Timeout of one signalling request.
    pub signalling_timeout: Duration,
    /// Subscribers fully verify (SRTP authentication, payload checksum, latency) one
    /// received RTP packet in this many (`--verify 1/N`, chosen by RTP sequence number)
    /// and book the rest from their clear header; 1 verifies every packet. Loss is
    /// counted from every packet either way.
    pub verify_every: u16,
    /// Simulcast (`--simulcast`, control mode, video only): publishers send three layers
    /// of their own SSRCs (150, 500 and 1500 kbit/s; `video_kbps` is ignored), and
    /// subscriber `i` of each room is capped at layer `i % 3` with
    /// `track.set_preference`.
    pub simulcast: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::InProcess { shards: 2 },
            rooms: 1,
            publishers: 1,
            subscribers: 3,
            threads: 2,
            duration: Duration::from_secs(10),
            ramp: 50.0,
            connect_timeout: Duration::from_secs(10),
            video: true,
            audio: true,
            video_kbps: 500,
            fps: 30,
            keyframe_interval: 2.0,
            audio_bytes: 80,
            audio_period: Duration::from_millis(20),
            room_prefix: "loadgen".into(),
            allow_remote: false,
            token: None,
            signalling_timeout: Duration::from_secs(10),
            verify_every: 16,
            simulcast: false,
        }
    }
}

impl Config {
    pub(super) fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |m: &str| Err(LoadgenError::Config(m.into()));
        if self.threads == 0 {
            return bad("threads must be at least 1");
        }
        if self.rooms == 0 {
            return bad("rooms must be at least 1");
        }
        if self.fps == 0 || self.fps > 240 {
            return bad("fps must be in 1..=240");
        }
        if !(self.ramp >= 0.0 && self.ramp.is_finite()) {
            return bad("ramp must be a non-negative number");
        }
        if !(self.keyframe_interval > 0.0 && self.keyframe_interval.is_finite()) {
            return bad("keyframe interval must be positive");
        }
        if self.audio_bytes < payload::MIN_AUDIO_PAYLOAD || self.audio_bytes > payload::MAX_PAYLOAD
        {
            return Err(LoadgenError::Config(format!(
                "audio bytes must be in {}..={}",
                payload::MIN_AUDIO_PAYLOAD,
                payload::MAX_PAYLOAD
            )));
        }
        if self.audio_period < MIN_AUDIO_PERIOD || self.audio_period > MAX_AUDIO_PERIOD {
            return Err(LoadgenError::Config(format!(
                "audio period must be {} to {} ms",
                MIN_AUDIO_PERIOD.as_millis(),
                MAX_AUDIO_PERIOD.as_millis()
            )));
        }
        if self.verify_every == 0 || self.verify_every > MAX_VERIFY_EVERY {
            return Err(LoadgenError::Config(format!(
                "verify sampling must be 1/1 to 1/{MAX_VERIFY_EVERY}"
            )));
        }
        if self.video_kbps == 0 || self.video_kbps > 100_000 {
            return bad("video kbps must be in 1..=100000");
        }
        if self.simulcast && (self.audio || !self.video || !matches!(self.mode, Mode::Control(_))) {
            return bad("--simulcast wants --control and video only (--no-audio)");
        }
        if self.room_prefix.is_empty()
            || !self
                .room_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad("room prefix must be non-empty [A-Za-z0-9_-]");
        }
        Ok(())
    }

    pub(super) fn media(&self) -> MediaParams {
        MediaParams {
            video: self.video,
            audio: self.audio,
            video_kbps: self.video_kbps,
            fps: self.fps,
            keyframe_every: ((self.keyframe_interval * f64::from(self.fps)).round() as u64).max(1),
            audio_bytes: self.audio_bytes,
            audio_period: self.audio_period,
            simulcast: self.simulcast,
        }
    }

    pub(super) fn kinds(&self) -> u64 {
        u64::from(self.video) + u64::from(self.audio)
    }
}
