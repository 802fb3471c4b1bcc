//! http-post: the smallest useful server around an `Rtc`.
//!
//! One UDP socket, a tiny HTTP endpoint that takes an SDP offer and answers it, and
//! a single-threaded run loop as in the seed README. Open `http://127.0.0.1:3000/`
//! in a browser: the page sends camera and microphone; this program reports what
//! it receives.
//!
//! ```text
//! cargo run --release -p rtc-core --example http-post -- [--http 127.0.0.1:3000]
//!     [--udp 127.0.0.1:0] [--ice-lite] [--dtls-server] [--frame-mode] [--exit-after-packets N]
//! ```
//! Status lines are printed to stdout as JSON (one object per line), so scripts can
//! follow a session.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rtc_core::Rtc;
use rtc_core::event::Event;
use rtc_core::ice::Candidate;
use rtc_core::io::{Input, Output, Protocol, Receive};
use rtc_core::sdp_api::SdpOffer;

/// Options of the example (also used by the Chromium interop test).
#[derive(Debug, Clone)]
pub struct Options {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// UDP media address.
    pub udp: SocketAddr,
    /// Act as ICE-lite.
    pub ice_lite: bool,
    /// Answer `a=setup:passive` (we are the DTLS server) instead of `active`.
    pub dtls_server: bool,
    /// RTP mode (default) or frame mode.
    pub rtp_mode: bool,
    /// DTLS 1.2 only (default: 1.3 when the browser offers it).
    pub dtls12: bool,
    /// Stop after this many SRTP packets were decrypted (and, in RTP mode, as many
    /// RTP events seen; padding-only probes are not events) (0 = run forever).
    pub exit_after_packets: u64,
    /// Give up after this long without finishing (None = never).
    pub deadline: Option<Duration>,
    /// Stop when this flag is set (used by tests).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            http: "127.0.0.1:3000".parse().expect("valid literal address"),
            udp: "127.0.0.1:0".parse().expect("valid literal address"),
            ice_lite: false,
            dtls_server: false,
            rtp_mode: true,
            dtls12: false,
            exit_after_packets: 0,
            deadline: None,
            stop: None,
        }
    }
}

/// What happened in one session, reported when `run` returns.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// ICE reached connected.
    pub ice_connected: bool,
    /// DTLS finished and SRTP keys were installed.
    pub dtls_connected: bool,
    /// The SRTP profile in use.
    pub srtp_profile: Option<String>,
    /// The DTLS version in use.
    pub dtls_version: Option<String>,
    /// SRTP packets decrypted.
    pub srtp_packets: u64,
    /// RTP packet events seen (RTP mode).
    pub rtp_events: u64,
    /// Data-channel labels opened.
    pub channels: Vec<String>,
    /// Data-channel messages echoed back.
    pub channel_messages: u64,
    /// Frame mode: whole video frames received.
    pub video_frames: u64,
    /// Frame mode: of which keyframes.
    pub keyframes: u64,
    /// Frame mode: frames whose bitstream failed the codec sanity check.
    pub corrupt_frames: u64,
    /// Frame mode: audio frames received.
    pub audio_frames: u64,
    /// Frame mode: frames sent back to the browser.
    pub echoed_frames: u64,
    /// Frame mode: the video codec seen.
    pub video_codec: Option<String>,
}

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rtc-core http-post</title></head>
<body><h1>rtc-core http-post</h1><p id="state">starting…</p>
<script>
const state = (s) => { document.getElementById('state').textContent = s; window.rtcState = s; };
(async () => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  for (const t of stream.getTracks()) pc.addTrack(t, stream);
  pc.oniceconnectionstatechange = () => state('ice ' + pc.iceConnectionState);
  pc.onconnectionstatechange = () => state('pc ' + pc.connectionState);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch('/offer', { method: 'POST', body: pc.localDescription.sdp,
    headers: { 'content-type': 'application/sdp' } });
  if (!res.ok) throw new Error('offer rejected: ' + res.status + ' ' + await res.text());
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  state('answered');
})().catch((e) => state('error ' + e));
</script></body></html>"#;

/// The offer/answer step the data-channel and echo pages share: create the offer, wait
/// for ICE gathering (at most 2 s), POST the offer to `/offer` and apply the answer. A
/// macro rather than a `const` so that `concat!` can splice it into the page literals.
macro_rules! offer_answer_js {
    () => {
        r#"  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((r) => { if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r(); setTimeout(r, 2000); });
  const res = await fetch('/offer', { method: 'POST', body: pc.localDescription.sdp });
  if (!res.ok) throw new Error('offer rejected: ' + res.status + ' ' + await res.text());
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
"#
    };
}

/// A data-channel check page: two channels (ordered reliable, unordered with
/// maxRetransmits=0); every message is echoed by the server and verified here.
const DC_PAGE: &str = concat!(
    r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rtc-core data channels</title></head>
<body><h1>rtc-core data channels</h1><p id="state">starting…</p>
<script>
const state = (s) => { document.getElementById('state').textContent = s; window.rtcState = s; };
const N = 1000, LOSSY = 100;
const size = (i) => (i % 100 === 7 ? 200 * 1024 : ((i * 37) % 4000) + 4);
const make = (i) => { const b = new Uint8Array(size(i)); b.fill(i % 251); new DataView(b.buffer).setUint32(0, i); return b; };
const check = (i, buf) => { const b = new Uint8Array(buf); const want = make(i);
  if (b.length !== want.length) return false; for (let k = 4; k < b.length; k += 997) if (b[k] !== want[k]) return false; return true; };
(async () => {
  const pc = new RTCPeerConnection();
  const rel = pc.createDataChannel('reliable');
  const lossy = pc.createDataChannel('lossy', { ordered: false, maxRetransmits: 0 });
  rel.binaryType = lossy.binaryType = 'arraybuffer';
"#,
    offer_answer_js!(),
    r#"  await Promise.all([rel, lossy].map((c) => new Promise((r) => c.readyState === 'open' ? r() : (c.onopen = r))));
  state('open');
  let next = 0, lossyGot = 0, bad = 0;
  const done = new Promise((resolve) => {
    rel.onmessage = (e) => { const i = new DataView(e.data).getUint32(0);
      if (i !== next || !check(i, e.data)) { bad++; state('dc fail: got ' + i + ' expected ' + next); }
      next++; if (next === N) resolve(); };
  });
  lossy.onmessage = (e) => { if (check(new DataView(e.data).getUint32(0), e.data)) lossyGot++; else bad++; };
  rel.bufferedAmountLowThreshold = 1 << 20;
  for (let i = 0; i < N; i++) {
    if (rel.bufferedAmount > (4 << 20)) await new Promise((r) => (rel.onbufferedamountlow = r));
    rel.send(make(i));
  }
  for (let i = 0; i < LOSSY; i++) lossy.send(make(i % 50));
  await done;
  await new Promise((r) => setTimeout(r, 500));
  state(bad === 0 ? 'dc ok reliable=' + next + ' lossy=' + lossyGot : 'dc fail bad=' + bad);
  window.rtcDone = true;
})().catch((e) => { state('error ' + e); window.rtcDone = true; });
</script></body></html>"#
);

/// A media check page: sends moving noise video and the microphone, receives the echo
/// from the server, and reports frames decoded and its send bitrate (which only
/// ramps up if our transport-wide congestion control feedback is right).
/// `?codec=H264` prefers H.264.
const ECHO_PAGE: &str = concat!(
    r#"<!doctype html>
<html><head><meta charset="utf-8"><title>rtc-core echo</title></head>
<body><h1>rtc-core echo</h1><p id="state">starting…</p><video id="v" autoplay muted playsinline></video>
<script>
const state = (s) => { document.getElementById('state').textContent = s; window.rtcState = s; };
(async () => {
  const codec = new URLSearchParams(location.search).get('codec');
  const pc = new RTCPeerConnection();
  const cam = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
  // Video: a canvas of moving noise, which no encoder can compress, so the send
  // bitrate follows the bandwidth estimate (the fake camera's pattern needs ~150 kbps).
  const canvas = document.createElement('canvas');
  // Noise (incompressible: the encoder sends what the estimate allows, so the send
  // rate shows the estimate) at 320x180: at 640x360 painting it in JS and the
  // software H.264 encode and decode of it fell to 1.5-2.6 frames/s under two busy
  // loops, too few to echo 60 frames in the 15 s window.
  canvas.width = 320; canvas.height = 180;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(canvas.width, canvas.height);
  const u32 = new Uint32Array(img.data.buffer);
  let seed = 1;
  setInterval(() => {
    for (let i = 0; i < u32.length; i++) { seed = (seed * 1664525 + 1013904223) >>> 0; u32[i] = seed | 0xff000000; }
    ctx.putImageData(img, 0, 0);
  }, 33);
  const stream = new MediaStream([cam.getAudioTracks()[0], canvas.captureStream(30).getVideoTracks()[0]]);
  for (const t of stream.getTracks()) {
    const tr = pc.addTransceiver(t, { direction: 'sendrecv', streams: [stream] });
    if (t.kind === 'video' && codec) {
      const caps = RTCRtpReceiver.getCapabilities('video').codecs;
      tr.setCodecPreferences([...caps.filter((c) => c.mimeType === 'video/' + codec), ...caps.filter((c) => c.mimeType === 'video/rtx')]);
    }
    if (t.kind === 'video') {
      const p = tr.sender.getParameters();
      p.encodings = p.encodings && p.encodings.length ? p.encodings : [{}];
      p.encodings[0].maxBitrate = 2500000;
      tr.sender.setParameters(p).catch(() => {});
    }
  }
  pc.ontrack = (e) => { if (e.track.kind === 'video') document.getElementById('v').srcObject = new MediaStream([e.track]); };
"#,
    offer_answer_js!(),
    r#"  let lastBytes = 0, lastTs = 0, maxKbps = 0, decoded = 0, audioIn = 0, bweKbps = 0, rtt = -1;
  const t0 = Date.now();
  while (Date.now() - t0 < 15000) {
    await new Promise((r) => setTimeout(r, 1000));
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') decoded = s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') audioIn = s.packetsReceived || 0;
      if (s.type === 'remote-inbound-rtp' && s.kind === 'video' && s.roundTripTime !== undefined) rtt = s.roundTripTime;
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate)
        bweKbps = Math.max(bweKbps, Math.round(s.availableOutgoingBitrate / 1000));
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        if (lastTs) maxKbps = Math.max(maxKbps, (s.bytesSent - lastBytes) * 8 / (s.timestamp - lastTs));
        lastBytes = s.bytesSent; lastTs = s.timestamp;
      }
    });
    state('progress decoded=' + decoded + ' audio=' + audioIn + ' kbps=' + Math.round(maxKbps) + ' bwe=' + bweKbps + ' rtt=' + rtt + ' t=' + Math.round((Date.now() - t0) / 1000));
    if (decoded > 60 && maxKbps > 1000) break;
  }
  state((decoded > 60 && maxKbps > 1000 ? 'media ok' : 'media fail') + ' decoded=' + decoded + ' audio=' + audioIn + ' kbps=' + Math.round(maxKbps) + ' t=' + Math.round((Date.now() - t0) / 1000));
  window.rtcDone = true;
})().catch((e) => { state('error ' + e); window.rtcDone = true; });
</script></body></html>"#
);

fn main() {
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{name} needs a value");
                std::process::exit(2)
            })
        };
        match a.as_str() {
            "--http" => opts.http = parse_or_exit(&val("--http")),
            "--udp" => opts.udp = parse_or_exit(&val("--udp")),
            "--ice-lite" => opts.ice_lite = true,
            "--dtls-server" => opts.dtls_server = true,
            "--frame-mode" => opts.rtp_mode = false,
            "--dtls12" => opts.dtls12 = true,
            "--exit-after-packets" => opts.exit_after_packets = parse_or_exit(&val(&a)),
            "--help" | "-h" => {
                println!(
                    "usage: http-post [--http ADDR] [--udp ADDR] [--ice-lite] [--dtls-server] [--frame-mode] \
                     [--dtls12] [--exit-after-packets N]"
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(opts.http) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", opts.http);
            std::process::exit(1);
        }
    };
    eprintln!("open http://{} in a browser", opts.http);
    loop {
        match run(&listener, &opts, |line| println!("{line}")) {
            Ok(r) => eprintln!("session ended: {r:?}"),
            Err(e) => eprintln!("session error: {e}"),
        }
        if opts.exit_after_packets > 0 {
            return;
        }
    }
}

/// A cheap structural check of a received frame: the VP8 frame tag (and keyframe
/// start code), or H.264 Annex-B NAL headers.
fn bitstream_looks_valid(codec: rtc_core::Codec, keyframe: bool, data: &[u8]) -> bool {
    match codec {
        rtc_core::Codec::Vp8 => {
            let Some(&b0) = data.first() else {
                return false;
            };
            let is_key = b0 & 1 == 0;
            let first_part = (u32::from(b0) >> 5)
                | (u32::from(*data.get(1).unwrap_or(&0)) << 3)
                | (u32::from(*data.get(2).unwrap_or(&0)) << 11);
            is_key == keyframe
                && (first_part as usize) < data.len()
                && (!is_key || data.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..]))
        }
        rtc_core::Codec::H264 => {
            data.starts_with(&[0, 0, 0, 1])
                && data
                    .windows(5)
                    .filter(|w| w[..4] == [0, 0, 0, 1])
                    .all(|w| w[4] & 0x80 == 0)
        }
        _ => !data.is_empty(),
    }
}

fn parse_or_exit<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("cannot parse {s:?}");
        std::process::exit(2)
    })
}

/// Serves HTTP until an offer arrives, answers it, then runs the media loop for
/// that one peer until it disconnects (or the packet goal/deadline is reached).
pub fn run(
    listener: &TcpListener,
    opts: &Options,
    mut status: impl FnMut(String),
) -> io::Result<Report> {
    let socket = UdpSocket::bind(opts.udp)?;
    let local = socket.local_addr()?;
    let start = Instant::now();

    let mut rtc = Rtc::builder()
        .set_ice_lite(opts.ice_lite)
        .set_rtp_mode(opts.rtp_mode)
        .set_answer_dtls_active(!opts.dtls_server)
        .set_dtls_versions(if opts.dtls12 {
            rtc_core::dtls::DtlsVersions::Dtls12
        } else {
            rtc_core::dtls::DtlsVersions::Auto
        })
        .build(Instant::now())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let cand =
        Candidate::host(local, Protocol::Udp).map_err(|e| io::Error::other(e.to_string()))?;
    rtc.add_local_candidate(cand);

    // HTTP: serve the page until an offer is posted.
    loop {
        let (stream, _) = listener.accept()?;
        match handle_http(stream, &mut rtc) {
            Ok(true) => break,
            Ok(false) => continue,
            Err(e) => eprintln!("http: {e}"),
        }
    }
    status(format!(r#"{{"event":"answered","udp":"{local}"}}"#));

    let mut report = Report::default();
    let mut buf = vec![0u8; 2000];
    let mut arrivals = ArrivalSocket::new(&socket)?;
    // Every input's instant is at least the previous one's (the `Rtc` requires it).
    let mut last_input = Instant::now();
    loop {
        let timeout = match rtc
            .poll_output()
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            Output::Timeout(t) => t,
            Output::Transmit(t) => {
                socket.send_to(t.contents, t.destination)?;
                continue;
            }
            Output::Event(e) => {
                match e {
                    Event::IceConnectionStateChange(s) => {
                        status(format!(r#"{{"event":"ice","state":"{s:?}"}}"#));
                        if matches!(
                            s,
                            rtc_core::ice::IceConnectionState::Connected
                                | rtc_core::ice::IceConnectionState::Completed
                        ) {
                            report.ice_connected = true;
                        }
                    }
                    Event::Connected => {
                        report.dtls_connected = true;
                        report.srtp_profile = rtc.srtp_profile().map(|p| format!("{p:?}"));
                        report.dtls_version = rtc.dtls_version().map(|v| v.to_string());
                        status(format!(
                            r#"{{"event":"connected","srtp_profile":"{}"}}"#,
                            report.srtp_profile.as_deref().unwrap_or("")
                        ));
                    }
                    Event::RtpPacket(_) => report.rtp_events += 1,
                    Event::ChannelOpen(_, label) => {
                        status(format!(r#"{{"event":"channel_open","label":"{label}"}}"#));
                        report.channels.push(label);
                    }
                    Event::MediaData(d) => {
                        let video = !matches!(d.codec, rtc_core::Codec::Opus);
                        if video {
                            report.video_frames += 1;
                            report.keyframes += u64::from(d.keyframe);
                            report.video_codec = Some(format!("{:?}", d.codec));
                            if !bitstream_looks_valid(d.codec, d.keyframe, &d.data) {
                                report.corrupt_frames += 1;
                            }
                        } else {
                            report.audio_frames += 1;
                        }
                        // Echo the frame back on the same media section, at the
                        // instant of the input that completed it (inputs' instants,
                        // arrival times, may trail the clock).
                        if let Some(w) = rtc.writer(d.mid)
                            && w.write(d.pt, last_input, d.time, &d.data).is_ok()
                        {
                            report.echoed_frames += 1;
                        }
                    }
                    Event::KeyframeRequest(k) => {
                        // The browser wants a keyframe of what we echo: ask its sender.
                        if let Some(mid) = k.mid
                            && let Some(w) = rtc.writer(mid)
                        {
                            let _ = w.request_keyframe(k.kind);
                        }
                    }
                    Event::ChannelData(d) => {
                        // Echo every message back on the channel it came from.
                        report.channel_messages += 1;
                        if let Some(mut ch) = rtc.channel(d.id)
                            && let Err(e) = ch.write(d.binary, &d.data)
                        {
                            status(format!(r#"{{"event":"echo_failed","error":"{e}"}}"#));
                        }
                    }
                    Event::Failed(r) => {
                        status(format!(r#"{{"event":"failed","reason":"{r:?}"}}"#));
                    }
                    _ => {}
                }
                continue;
            }
        };
        report.srtp_packets = rtc.stats().srtp_packets_in;
        if !rtc.is_alive() {
            break;
        }
        if opts.exit_after_packets > 0
            && report.srtp_packets >= opts.exit_after_packets
            && (!opts.rtp_mode || report.rtp_events >= opts.exit_after_packets)
        {
            status(format!(
                r#"{{"event":"done","srtp_packets":{},"rtp_events":{}}}"#,
                report.srtp_packets, report.rtp_events
            ));
            rtc.disconnect();
            while let Ok(Output::Transmit(t)) = rtc.poll_output() {
                let _ = socket.send_to(t.contents, t.destination);
            }
            break;
        }
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            status(format!(
                r#"{{"event":"stopped","channel_messages":{}}}"#,
                report.channel_messages
            ));
            rtc.disconnect();
            while let Ok(Output::Transmit(t)) = rtc.poll_output() {
                let _ = socket.send_to(t.contents, t.destination);
            }
            break;
        }
        if opts.deadline.is_some_and(|d| start.elapsed() > d) {
            status(r#"{"event":"deadline"}"#.to_string());
            break;
        }
        // Datagrams already waiting are read before a due timer is handled: their
        // arrival times are in the past and inputs must not go back in time.
        let now = Instant::now();
        let wait = timeout.saturating_duration_since(now);
        let res = match arrivals.recv(&socket, &mut buf, wait.min(Duration::from_millis(500))) {
            Ok((n, source, at)) => {
                // The kernel's arrival time, not the time we got to read it: TWCC
                // feedback reports these, and the browser's bandwidth estimation
                // takes our read delays (this loop late under CPU load) for queuing.
                let at = at.max(last_input);
                last_input = at;
                rtc.handle_input(Input::Receive(
                    at,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents: &buf[..n],
                    },
                ))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let now = Instant::now().max(last_input);
                last_input = now;
                rtc.handle_input(Input::Timeout(now))
            }
            Err(e) => return Err(e),
        };
        res.map_err(|e| io::Error::other(e.to_string()))?;
    }
    Ok(report)
}

/// Receives datagrams with the kernel's arrival timestamp (`SO_TIMESTAMPNS`).
pub struct ArrivalSocket {
    fd: std::os::fd::RawFd,
}

impl ArrivalSocket {
    /// Turns on arrival timestamps for `socket` (which must outlive this value).
    ///
    /// # Errors
    ///
    /// The `setsockopt` failure.
    pub fn new(socket: &UdpSocket) -> io::Result<ArrivalSocket> {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        let on: libc::c_int = 1;
        // SAFETY: `fd` is an open socket for the duration of the call and the option
        // value points to a live `c_int` of the given length.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ArrivalSocket { fd })
    }

    /// One datagram into `buf`, waiting up to `wait` (zero: only what is queued).
    /// Returns its length, source and arrival instant (when the kernel received it,
    /// on the monotonic clock; the read time if the kernel gave no timestamp).
    ///
    /// # Errors
    ///
    /// `WouldBlock` (zero `wait`) or `TimedOut` when nothing came; other socket errors.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        buf: &mut [u8],
        wait: Duration,
    ) -> io::Result<(usize, SocketAddr, Instant)> {
        let flags = if wait.is_zero() {
            libc::MSG_DONTWAIT
        } else {
            socket.set_read_timeout(Some(wait))?;
            0
        };
        // SAFETY: all-zero is a valid `sockaddr_storage`, `iovec` and `msghdr`.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one `timespec` control message, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: see above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: every pointer in `msg` refers to a live local buffer of the stated
        // length, and `self.fd` is the open socket borrowed as `socket`.
        let n = unsafe { libc::recvmsg(self.fd, &mut msg, flags) };
        let (read_at, read_wall) = clocks_now();
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(
                if e.kind() == io::ErrorKind::WouldBlock && !wait.is_zero() {
                    io::Error::from(io::ErrorKind::TimedOut)
                } else {
                    e
                },
            );
        }
        let source = sockaddr_to_std(&addr).ok_or_else(|| io::Error::other("bad source"))?;
        let mut at = read_at;
        // SAFETY: `msg` was filled by `recvmsg`; the CMSG macros walk its control
        // buffer within `msg_controllen`, and a `SCM_TIMESTAMPNS` message carries one
        // `timespec` (read unaligned).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                    let arrived =
                        std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                    // The wall clock tells how long the datagram waited for us.
                    let waited = read_wall.duration_since(arrived).unwrap_or_default();
                    at = read_at.checked_sub(waited).unwrap_or(read_at);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok((n as usize, source, at))
    }
}

/// The monotonic and the wall clock read at (nearly) the same moment: the wall clock
/// between two monotonic reads, the tightest of a few tries, the monotonic time taken
/// at the middle. A thread preempted between two plain reads (tens of milliseconds,
/// seconds on an overloaded machine) would shift every arrival time converted with
/// them by that long.
fn clocks_now() -> (Instant, std::time::SystemTime) {
    let mut best: Option<(Duration, Instant, std::time::SystemTime)> = None;
    for _ in 0..4 {
        let before = Instant::now();
        let wall = std::time::SystemTime::now();
        let after = Instant::now();
        let bracket = after.duration_since(before);
        let mid = before + bracket / 2;
        if best.is_none_or(|(b, _, _)| bracket < b) {
            best = Some((bracket, mid, wall));
        }
        if bracket < Duration::from_micros(100) {
            break;
        }
    }
    // At least one try ran, so `best` is set; the fallback is never taken.
    best.map_or_else(
        || (Instant::now(), std::time::SystemTime::now()),
        |(_, mono, wall)| (mono, wall),
    )
}

fn sockaddr_to_std(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(a.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a `sockaddr_in`.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(v4.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a `sockaddr_in6`.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::from((ip, u16::from_be(v6.sin6_port))))
        }
        _ => None,
    }
}

/// Handles one HTTP request. Returns true when an offer was answered.
fn handle_http(stream: TcpStream, rtc: &mut Rtc) -> io::Result<bool> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    if content_length > 256 * 1024 {
        respond(
            stream,
            "413 Payload Too Large",
            "text/plain",
            "offer too large",
        )?;
        return Ok(false);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/") => {
            respond(stream, "200 OK", "text/html; charset=utf-8", PAGE)?;
            Ok(false)
        }
        ("GET", path) if path.starts_with("/echo") => {
            respond(stream, "200 OK", "text/html; charset=utf-8", ECHO_PAGE)?;
            Ok(false)
        }
        ("GET", "/datachannel") => {
            respond(stream, "200 OK", "text/html; charset=utf-8", DC_PAGE)?;
            Ok(false)
        }
        ("POST", "/offer") => {
            let text = String::from_utf8_lossy(&body);
            let offer = match SdpOffer::from_sdp_string(&text) {
                Ok(o) => o,
                Err(e) => {
                    respond(stream, "400 Bad Request", "text/plain", &e.to_string())?;
                    return Ok(false);
                }
            };
            match rtc.sdp_api().accept_offer(offer) {
                Ok(answer) => {
                    respond(stream, "200 OK", "application/sdp", &answer.to_sdp_string())?;
                    Ok(true)
                }
                Err(e) => {
                    respond(stream, "400 Bad Request", "text/plain", &e.to_string())?;
                    Ok(false)
                }
            }
        }
        _ => {
            respond(stream, "404 Not Found", "text/plain", "not found")?;
            Ok(false)
        }
    }
}

fn respond(mut stream: TcpStream, status: &str, ctype: &str, body: &str) -> io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
