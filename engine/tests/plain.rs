//! Plain RTP in and out (`plain.egress`, `plain.ingest`) against real ffmpeg processes
//! on loopback: ffmpeg records a WebRTC publisher's VP8 + Opus from the engine's plain
//! egress, and ffmpeg publishes a VP8 test pattern into the engine through a plain
//! ingest that a WebRTC subscriber receives. The control operations are called on the
//! engine's control handler; bad input must give typed errors.
//!
//! `scripts/test-all.sh` installs ffmpeg; without it the ffmpeg tests say so and pass.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use control::{ClientId, ControlError, ControlHandler, ErrorCode, EventHub, Request, Response};
use engine::control::EngineControl;
use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, SessionId};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

const CLIENT: ClientId = ClientId(1);
/// The SSRC ffmpeg publishes with (`-ssrc`).
const FFMPEG_SSRC: u32 = 0x0005_EED5;

struct Rig {
    engine: EngineHandle,
    ctl: Arc<EngineControl>,
    dir: PathBuf,
}

impl Rig {
    fn start(name: &str) -> Rig {
        let engine = Engine::start(engine_config(BackendPreference::Auto, 2)).unwrap();
        let ctl = EngineControl::new(engine.clone(), EventHub::new(1024).unwrap());
        let dir = std::env::temp_dir().join(format!("plain-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Rig { engine, ctl, dir }
    }

    fn call(&self, req: Request) -> Result<Response, ControlError> {
        self.ctl.handle(CLIENT, req)
    }

    /// A WebRTC peer whose session is created through `session.create`.
    fn client(&self, name: &str, media: &[(MediaKind, Direction)]) -> Client {
        Client::connect_offer(name, media, |offer| {
            let req = Request::SessionCreate(control::SessionCreate {
                setup: control::SessionSetup::Offer(offer),
                room: None,
                shard: None,
                reap_on_disconnect: false,
            });
            match self.call(req) {
                Ok(Response::SessionCreated(c)) => (SessionId(c.session.0), c.answer.unwrap()),
                other => panic!("session.create: {other:?}"),
            }
        })
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.ctl.shutdown();
        self.engine.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until every client is connected (the control handler's event pump takes the
/// engine's events, so the clients' side is what is watched).
fn connected(clients: &mut [Client]) {
    let ok = drive(clients, Duration::from_secs(15), |cs| {
        cs.iter().all(|c| c.connected)
    });
    assert!(ok, "clients did not connect");
}

fn code(r: Result<Response, ControlError>) -> ErrorCode {
    match r {
        Err(e) => e.code,
        Ok(ok) => panic!("expected an error, got {ok:?}"),
    }
}

fn ffmpeg_available() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|t| {
        Command::new(t)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed (scripts/test-all.sh installs them)");
    }
    ok
}

/// A free even UDP port on loopback whose successor is free too (RTP + the RTCP port
/// ffmpeg binds).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if !p.is_multiple_of(2) || p > 65_000 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free port pair");
}

/// Whether something (ffmpeg) has bound UDP `port` on loopback.
fn bound(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// An ffmpeg process, killed and reaped when dropped (also when a test fails).
struct Ffmpeg(Child);

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        // Already exited: both fail harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` to exit (bounded), killing it past the deadline.
fn reap(child: &mut Child, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Stops ffmpeg the way its `q` key does, so it finishes its output file (a signal
/// would do, but the engine's threads block SIGINT and a child inherits that mask).
fn quit(child: &mut Child) {
    use std::io::Write as _;
    if let Some(stdin) = child.stdin.as_mut() {
        // ffmpeg gone already: reap() notices.
        let _ = stdin.write_all(b"q");
        let _ = stdin.flush();
    }
}

/// A VP8 test pattern (320x240, 30 fps, a keyframe every second) as IVF frames.
fn vp8_frames(dir: &Path, secs: u32) -> Vec<Vec<u8>> {
    let ivf = dir.join("pattern.ivf");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc=size=320x240:rate=30")
        .args(["-t", &secs.to_string()])
        .args([
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-g",
            "30",
            "-b:v",
            "300k",
        ])
        .arg(&ivf)
        .status()
        .unwrap();
    assert!(st.success(), "ffmpeg could not encode the pattern");
    let data = std::fs::read(&ivf).unwrap();
    // IVF: 32-byte file header, then per frame a 12-byte header (4-byte size).
    let mut frames = Vec::new();
    let mut at = usize::from(u16::from_le_bytes([data[6], data[7]]));
    while at + 12 <= data.len() {
        let n = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        frames.push(data[at + 12..at + 12 + n].to_vec());
        at += 12 + n;
    }
    frames
}

/// RTP payloads of one VP8 frame (RFC 7741 descriptor: S bit on the first packet).
fn vp8_packets(frame: &[u8]) -> Vec<Vec<u8>> {
    frame
        .chunks(1000)
        .enumerate()
        .map(|(i, c)| {
            let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// The VP8 keyframe's width in an RTP payload starting a frame, if it is one (RFC 7741
/// payload descriptor, then the VP8 frame header of RFC 6386 §9.1).
fn keyframe_width(p: &[u8]) -> Option<u16> {
    let b0 = *p.first()?;
    if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
        return None; // not the start of partition 0
    }
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        at = 2;
        if x & 0x80 != 0 {
            at += if p.get(at)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1;
        }
        if x & 0x30 != 0 {
            at += 1;
        }
    }
    let f = p.get(at..at + 10)?;
    if f[0] & 0x01 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    Some(u16::from_le_bytes([f[6], f[7]]) & 0x3fff)
}

#[test]
fn ffmpeg_records_a_webrtc_publisher_from_plain_egress() {
    record_from_egress("rec", None);
}

#[test]
fn ffmpeg_records_srtp_from_plain_egress_with_the_sdp_crypto_line() {
    // 30 bytes of key ‖ salt, base64 (AES_CM_128_HMAC_SHA1_80, what ffmpeg knows).
    record_from_egress("rec-srtp", Some("UkVDT1JESU5HX0tFWV9TQUxUXzMwX0JZVEVTX18x"));
}

/// A WebRTC publisher sends 5 s of VP8 + Opus; ffmpeg records the room from the plain
/// egress's SDP (SRTP AES_CM_128_HMAC_SHA1_80 with `key`, else plain RTP); ffprobe must
/// find both codecs and 5 ± 1 s.
fn record_from_egress(name: &str, key: Option<&str>) {
    if !ffmpeg_available() {
        return;
    }
    const SECS: u32 = 5;
    let rig = Rig::start(name);
    let frames = vp8_frames(&rig.dir, SECS);
    assert!(frames.len() >= 140, "{} frames", frames.len());
    let room = control::RoomId("rec".into());
    rig.call(Request::RoomCreate(control::RoomRef { room: room.clone() }))
        .unwrap();
    let media = [
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ];
    let mut clients = vec![rig.client("pub", &media)];
    let publisher = clients[0].id();
    connected(&mut clients);
    rig.call(Request::Publish(control::Publish {
        session: control::SessionId(publisher.0),
        room: room.clone(),
        tracks: None,
    }))
    .unwrap();

    let port = free_port_pair();
    let Ok(Response::PlainEgressed(eg)) = rig.call(Request::PlainEgress(control::PlainEgress {
        room,
        tracks: None,
        addr: "127.0.0.1".into(),
        port,
        srtp: key.map(|k| control::PlainSrtp {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key: k.into(),
            reverse_key: None,
        }),
    })) else {
        panic!("plain.egress failed");
    };
    assert_eq!(eg.tracks.len(), 2, "{eg:?}");
    let sdp = rig.dir.join("rec.sdp");
    std::fs::write(&sdp, &eg.sdp).unwrap();
    let out = rig.dir.join("rec.mkv");
    let log = std::fs::File::create(rig.dir.join("rec.log")).unwrap();
    let mut rec = Ffmpeg(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "info"])
            .args(["-analyzeduration", "1000000"])
            .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
            .arg(&sdp)
            .args(["-c", "copy", "-y"])
            .arg(&out)
            .stdin(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let listening = drive(&mut clients, Duration::from_secs(15), |_| {
        eg.tracks.iter().all(|t| bound(t.port))
    });
    assert!(listening, "ffmpeg did not bind its ports");

    // Real-time VP8 frames (the pattern again from its first keyframe when it ends)
    // and 20 ms Opus packets (the Opus silence frame). ffmpeg looks at its `q` key only
    // while packets arrive: it is told to stop after SECS, while media still flows.
    let start = Instant::now();
    let (mut vseq, mut aseq, mut vi, mut ai) = (0u16, 0u16, 0u32, 0u32);
    let mut told = false;
    let mut stopped = false;
    while start.elapsed() < Duration::from_secs(u64::from(SECS) + 15) {
        let now = Instant::now();
        let ms = (now - start).as_millis() as u32;
        while ai * 20 <= ms {
            clients[0].write_rtp(
                AUDIO_PT,
                aseq,
                960 * ai,
                AUDIO_SSRC,
                false,
                &[0xf8, 0xff, 0xfe],
            );
            aseq = aseq.wrapping_add(1);
            ai += 1;
        }
        while vi * 1000 / 30 <= ms {
            let pkts = vp8_packets(&frames[vi as usize % frames.len()]);
            let last = pkts.len() - 1;
            for (k, p) in pkts.iter().enumerate() {
                clients[0].write_rtp(VIDEO_PT, vseq, 3000 * vi, VIDEO_SSRC, k == last, p);
                vseq = vseq.wrapping_add(1);
            }
            vi += 1;
        }
        clients[0].drain(now);
        if !told && ms >= SECS * 1000 {
            quit(&mut rec.0);
            told = true;
        }
        if told && matches!(rec.0.try_wait(), Ok(Some(_))) {
            stopped = true;
            break;
        }
        if !clients[0].step(now) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    if !stopped {
        stopped = reap(&mut rec.0, Duration::from_secs(1));
    }
    let log = std::fs::read_to_string(rig.dir.join("rec.log")).unwrap_or_default();
    assert!(stopped, "ffmpeg did not stop: {log}");

    // The egress legs asked the publisher for a keyframe (PLI) when they started.
    let plis = clients[0].keyframe_requests.len();
    assert!(
        clients[0]
            .keyframe_requests
            .iter()
            .any(|(_, ssrc)| *ssrc == VIDEO_SSRC),
        "no keyframe request reached the publisher ({plis} requests)"
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).to_string();
    assert!(text.contains("codec_name=vp8"), "{text}\nffmpeg: {log}");
    assert!(text.contains("codec_name=opus"), "{text}");
    let duration: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {text:?}"));
    eprintln!("recorded {duration} s: {text}");
    assert!(
        (duration - f64::from(SECS)).abs() <= 1.0,
        "recorded {duration} s of {SECS} s"
    );
}

#[test]
fn ffmpeg_publishes_into_a_plain_ingest_and_a_webrtc_subscriber_gets_vp8() {
    ingest_from_ffmpeg("ingest", None);
}

#[test]
fn ffmpeg_publishes_srtp_with_given_keys_into_a_plain_ingest() {
    // 30 bytes of key ‖ salt, base64.
    let key = "WU9VUl9LRVlfU0FMVF8zMF9CWVRFU19fX19fX19f";
    ingest_from_ffmpeg("ingest-srtp", Some(key));
}

/// ffmpeg sends a VP8 pattern (SRTP AES_CM_128_HMAC_SHA1_80 with `key`, else plain)
/// to a plain ingest; a WebRTC subscriber must get a 320-wide keyframe.
fn ingest_from_ffmpeg(name: &str, key: Option<&str>) {
    if !ffmpeg_available() {
        return;
    }
    let rig = Rig::start(name);
    let room = control::RoomId("ingest".into());
    let src_port = free_port_pair();
    let Ok(Response::PlainIngested(ing)) = rig.call(Request::PlainIngest(control::PlainIngest {
        source: format!("127.0.0.1:{src_port}"),
        tracks: vec![control::PlainIngestTrack {
            kind: control::MediaKind::Video,
            ssrc: FFMPEG_SSRC,
            payloads: vec![control::RelayPayload {
                pt: 96,
                codec: "VP8".into(),
                clock_rate: 90_000,
            }],
        }],
        room: Some(room.clone()),
        srtp: key.map(|k| control::PlainSrtp {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key: k.into(),
            reverse_key: None,
        }),
        timeout_ms: None,
        shard: None,
    })) else {
        panic!("plain.ingest failed");
    };
    assert!(ing.sdp.contains("a=rtpmap:96 VP8/90000"), "{}", ing.sdp);
    let mut clients = vec![rig.client("sub", &[(MediaKind::Video, Direction::RecvOnly)])];
    let sub = clients[0].id();
    connected(&mut clients);
    let r = rig.call(Request::Subscribe(control::Subscribe {
        subscriber: control::SessionId(sub.0),
        publisher: ing.session,
        tracks: None,
    }));
    assert!(
        matches!(r, Ok(Response::Tracks(ref t)) if t.tracks.len() == 1),
        "{r:?}"
    );

    let engine_port = ing.addr.rsplit(':').next().unwrap();
    let url = format!(
        "{}://{}?localport={src_port}&rtcpport={engine_port}",
        if key.is_some() { "srtp" } else { "rtp" },
        ing.addr
    );
    let ff = Ffmpeg(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-t",
                "20",
            ])
            .args(["-c:v", "libvpx", "-deadline", "realtime", "-g", "15"])
            .args(["-ssrc", &FFMPEG_SSRC.to_string(), "-payload_type", "96"])
            .args(match key {
                Some(k) => vec![
                    "-srtp_out_suite",
                    "AES_CM_128_HMAC_SHA1_80",
                    "-srtp_out_params",
                    k,
                ],
                None => Vec::new(),
            })
            .args(["-f", "rtp", &url])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = drive(&mut clients, Duration::from_secs(30), |cs| {
        cs[0]
            .rtp
            .iter()
            .any(|p| keyframe_width(&p.payload) == Some(320))
    });
    drop(ff);
    let n = clients[0].rtp.len();
    assert!(got, "no 320-wide VP8 keyframe among {n} packets");
}

#[test]
fn bad_plain_requests_are_typed_errors() {
    let rig = Rig::start("bad");
    let track = |ssrc| control::PlainIngestTrack {
        kind: control::MediaKind::Video,
        ssrc,
        payloads: vec![control::RelayPayload {
            pt: 96,
            codec: "VP8".into(),
            clock_rate: 90_000,
        }],
    };
    let ingest = |source: &str, srtp: Option<control::PlainSrtp>| {
        Request::PlainIngest(control::PlainIngest {
            source: source.into(),
            tracks: vec![track(7)],
            room: None,
            srtp,
            timeout_ms: None,
            shard: Some(control::ShardId(0)),
        })
    };
    // Unknown room, unknown track.
    let egress = |room: &str, tracks| {
        Request::PlainEgress(control::PlainEgress {
            room: control::RoomId(room.into()),
            tracks,
            addr: "127.0.0.1".into(),
            port: 40_000,
            srtp: None,
        })
    };
    assert_eq!(code(rig.call(egress("nope", None))), ErrorCode::NotFound);
    rig.call(Request::RoomCreate(control::RoomRef {
        room: control::RoomId("r".into()),
    }))
    .unwrap();
    assert_eq!(code(rig.call(egress("r", None))), ErrorCode::NotFound);
    let unknown = vec![control::PlainTrackRef {
        session: control::SessionId(999),
        track: control::TrackId("0".into()),
    }];
    assert_eq!(
        code(rig.call(egress("r", Some(unknown)))),
        ErrorCode::NotFound
    );
    // Port 0, a bad address.
    assert_eq!(
        code(rig.call(ingest("127.0.0.1:0", None))),
        ErrorCode::BadParams
    );
    assert_eq!(
        code(rig.call(ingest("nowhere", None))),
        ErrorCode::BadParams
    );
    // Keys of the wrong length, an unknown suite, no base64.
    let srtp = |suite: &str, key: &str| control::PlainSrtp {
        suite: suite.into(),
        key: key.into(),
        reverse_key: None,
    };
    let short = srtp("AES_CM_128_HMAC_SHA1_80", "QUJDRA==");
    assert_eq!(
        code(rig.call(ingest("127.0.0.1:5000", Some(short)))),
        ErrorCode::BadParams
    );
    let suite = srtp("NULL_CIPHER", "QUJDRA==");
    assert_eq!(
        code(rig.call(ingest("127.0.0.1:5000", Some(suite)))),
        ErrorCode::BadParams
    );
    let b64 = srtp("AEAD_AES_128_GCM", "%%%");
    assert_eq!(
        code(rig.call(ingest("127.0.0.1:5000", Some(b64)))),
        ErrorCode::BadParams
    );
    // No track, a bad payload type.
    let mut none = control::PlainIngest {
        source: "127.0.0.1:5000".into(),
        tracks: Vec::new(),
        room: None,
        srtp: None,
        timeout_ms: None,
        shard: Some(control::ShardId(0)),
    };
    assert_ne!(
        code(rig.call(Request::PlainIngest(none.clone()))),
        ErrorCode::Internal
    );
    let mut bad_pt = track(7);
    bad_pt.payloads[0].pt = 200;
    none.tracks = vec![bad_pt];
    assert_eq!(
        code(rig.call(Request::PlainIngest(none))),
        ErrorCode::BadParams
    );
    // An address another live session owns on the shard is refused (no takeover).
    let first = rig.call(ingest("127.0.0.1:5000", None));
    assert!(matches!(first, Ok(Response::PlainIngested(_))), "{first:?}");
    assert_eq!(
        code(rig.call(ingest("127.0.0.1:5000", None))),
        ErrorCode::Conflict
    );
    // Closing the first frees the address.
    let Ok(Response::PlainIngested(first)) = first else {
        unreachable!()
    };
    rig.call(Request::SessionClose(control::SessionRef {
        session: first.session,
    }))
    .unwrap();
    let again = rig.call(ingest("127.0.0.1:5000", None));
    assert!(matches!(again, Ok(Response::PlainIngested(_))), "{again:?}");
}

#[test]
fn a_silent_ingest_is_closed_after_its_timeout() {
    let rig = Rig::start("silent");
    let ingest = |timeout_ms| {
        let req = Request::PlainIngest(control::PlainIngest {
            source: format!("127.0.0.1:{}", free_port_pair()),
            tracks: vec![control::PlainIngestTrack {
                kind: control::MediaKind::Audio,
                ssrc: 9,
                payloads: vec![control::RelayPayload {
                    pt: 111,
                    codec: "opus".into(),
                    clock_rate: 48_000,
                }],
            }],
            room: None,
            srtp: None,
            timeout_ms,
            shard: None,
        });
        match rig.call(req) {
            Ok(Response::PlainIngested(i)) => i.session,
            other => panic!("plain.ingest: {other:?}"),
        }
    };
    let (quiet, kept) = (ingest(Some(300)), ingest(None));
    let stats = |s| rig.call(Request::SessionStats(control::SessionRef { session: s }));
    let end = Instant::now() + Duration::from_secs(20);
    while stats(quiet).is_ok() {
        assert!(Instant::now() < end, "the silent ingest was not closed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code(stats(quiet)), ErrorCode::NotFound);
    // Without a timeout it stays.
    assert!(stats(kept).is_ok());
}
