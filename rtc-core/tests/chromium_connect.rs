//! Interop with a real browser: headless Chromium (Debian `chromium`, driven by
//! `tools/browser/open-page.js`) loads the http-post example's page, sends its fake
//! camera and microphone, and the `Rtc` must get ICE and DTLS up and decrypt at
//! least 100 SRTP packets. Fails (never skips) when the browser cannot run:
//! `scripts/test-all.sh` installs Chromium and the Node packages first.

#[path = "../examples/http-post.rs"]
#[allow(dead_code)]
mod http_post;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/browser")
}

fn run_with_chromium(
    ice_lite: bool,
    dtls_server: bool,
    dtls12: bool,
) -> (http_post::Report, Vec<String>) {
    run_page_mode(ice_lite, dtls_server, "", 100, None, true, dtls12).0
}

/// Serves one session of the example and opens `path` in Chromium. Returns the
/// server's report and status lines, and the page's state lines.
fn run_page(
    ice_lite: bool,
    dtls_server: bool,
    path: &str,
    exit_after_packets: u64,
    stop_when: Option<&str>,
) -> ((http_post::Report, Vec<String>), Vec<String>) {
    run_page_mode(
        ice_lite,
        dtls_server,
        path,
        exit_after_packets,
        stop_when,
        true,
        false,
    )
}

fn run_page_mode(
    ice_lite: bool,
    dtls_server: bool,
    path: &str,
    exit_after_packets: u64,
    stop_when: Option<&str>,
    rtp_mode: bool,
    dtls12: bool,
) -> ((http_post::Report, Vec<String>), Vec<String>) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
        dir.display()
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let url = format!(
        "http://{}/{path}",
        listener.local_addr().expect("local addr")
    );
    let stop = Arc::new(AtomicBool::new(false));
    let opts = http_post::Options {
        ice_lite,
        dtls_server,
        rtp_mode,
        dtls12,
        exit_after_packets,
        deadline: Some(Duration::from_secs(60)),
        stop: Some(Arc::clone(&stop)),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let r = http_post::run(&listener, &opts, |line| {
            let _ = tx.send(line);
        });
        r.expect("http-post run")
    });
    let mut child = Command::new("node")
        .arg(dir.join("open-page.js"))
        .arg(&url)
        .arg("60")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed to run the browser tests");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    // Until the server finishes (media goal, deadline) or the page reports done.
    let mut page_lines = Vec::new();
    while !server.is_finished() {
        if let Ok(line) = line_rx.recv_timeout(Duration::from_millis(100)) {
            eprintln!("{line}");
            let hit = stop_when.is_some_and(|w| line.contains(w));
            page_lines.push(line);
            if hit {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let report = server.join().expect("server thread");
    let _ = child.kill();
    let _ = child.wait();
    ((report, rx.try_iter().collect()), page_lines)
}

fn check(ice_lite: bool, dtls_server: bool, dtls12: bool, profile: &str, version: &str) {
    let (report, lines) = run_with_chromium(ice_lite, dtls_server, dtls12);
    eprintln!("status lines: {lines:#?}\nreport: {report:?}");
    assert!(report.ice_connected, "ICE never connected: {lines:?}");
    assert!(report.dtls_connected, "DTLS never connected: {lines:?}");
    assert!(
        report.srtp_packets >= 100,
        "only {} SRTP packets decrypted",
        report.srtp_packets
    );
    assert!(
        report.rtp_events >= 100,
        "only {} RTP events",
        report.rtp_events
    );
    assert_eq!(report.srtp_profile.as_deref(), Some(profile));
    assert_eq!(report.dtls_version.as_deref(), Some(version));
}

// Chromium offers DTLS 1.3, which the default (auto) settles on. Which SRTP profile
// lands is decided by the DTLS server: Chromium (BoringSSL) picks
// AES_CM_128_HMAC_SHA1_80 from our ClientHello (both versions); dimpl's DTLS 1.3 server
// takes the client's first, which for Chromium is AES_CM_128_HMAC_SHA1_80 too, while its
// DTLS 1.2 server picks AEAD_AES_256_GCM. Both roles in both versions are covered.

#[test]
fn chromium_full_ice_we_are_dtls_client_aes_cm() {
    check(false, false, false, "Aes128CmSha1_80", "DTLS 1.3");
}

#[test]
fn chromium_full_ice_we_are_dtls_client_dtls12_aes_cm() {
    check(false, false, true, "Aes128CmSha1_80", "DTLS 1.2");
}

#[test]
fn chromium_ice_lite_we_are_dtls_server_dtls13_clients_profile() {
    check(true, true, false, "Aes128CmSha1_80", "DTLS 1.3");
}

#[test]
fn chromium_ice_lite_we_are_dtls_server_dtls12_aead_gcm() {
    check(true, true, true, "AeadAes256Gcm", "DTLS 1.2");
}

#[test]
fn chromium_full_ice_we_are_dtls_server_dtls12_aead_gcm() {
    check(false, true, true, "AeadAes256Gcm", "DTLS 1.2");
}

#[test]
fn chromium_data_channels_echo() {
    // The page opens an ordered reliable and an unordered maxRetransmits=0 channel,
    // sends 1,000 messages (ten of 200 KiB) and 100 small lossy ones; the Rtc echoes
    // each; the page verifies order and content and reports `dc ok`.
    let ((report, lines), page) = run_page(false, false, "datachannel", 0, Some("state: dc "));
    eprintln!("status: {lines:#?}\nreport: {report:?}");
    let last = page
        .iter()
        .rev()
        .find(|l| l.starts_with("state: "))
        .cloned()
        .unwrap_or_default();
    assert!(
        last.starts_with("state: dc ok reliable=1000"),
        "page said {last:?}; all: {page:?}"
    );
    let mut labels = report.channels.clone();
    labels.sort();
    assert_eq!(labels, vec!["lossy".to_string(), "reliable".to_string()]);
    assert!(report.channel_messages >= 1000);
}

fn check_echo(codec_query: &str, codec: &str) {
    // Frame mode: Chromium sends camera + microphone, the Rtc assembles frames,
    // checks their bitstream, and echoes them back; the page must decode > 30 echoed
    // frames and its send bitrate must pass 1 Mbit/s (only if our TWCC feedback works).
    let path = format!("echo{codec_query}");
    let ((report, lines), page) =
        run_page_mode(false, false, &path, 0, Some("state: media "), false, false);
    let lines: Vec<&String> = lines.iter().filter(|l| !l.contains("\"rtp\"")).collect();
    eprintln!("status: {lines:#?}\nreport: {report:?}");
    let last = page
        .iter()
        .rev()
        .find(|l| l.starts_with("state: media"))
        .cloned()
        .unwrap_or_default();
    assert!(
        report.video_frames >= 50,
        "only {} video frames",
        report.video_frames
    );
    assert!(report.keyframes >= 1, "no keyframe");
    assert_eq!(report.corrupt_frames, 0, "corrupt frames");
    assert!(
        report.audio_frames >= 50,
        "only {} audio frames",
        report.audio_frames
    );
    assert_eq!(report.video_codec.as_deref(), Some(codec));
    assert!(
        last.starts_with("state: media ok"),
        "page said {last:?}; all: {page:?}"
    );
}

#[test]
fn chromium_media_vp8_opus_frames_echo_and_bwe() {
    check_echo("", "Vp8");
}

#[test]
fn chromium_media_h264_frames_echo_and_bwe() {
    check_echo("?codec=H264", "H264");
}

/// Not a browser test: the server loop stamps a datagram with the kernel's arrival
/// time, not with when it got around to reading it (which under CPU load is late, and
/// would go into our TWCC feedback as queuing delay).
#[test]
fn server_loop_stamps_datagrams_with_their_arrival_time() {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut arrivals = http_post::ArrivalSocket::new(&rx).expect("SO_TIMESTAMPNS");
    let mut buf = [0u8; 64];
    let empty = arrivals.recv(&rx, &mut buf, Duration::ZERO).unwrap_err();
    assert_eq!(empty.kind(), std::io::ErrorKind::WouldBlock);
    let waited = arrivals
        .recv(&rx, &mut buf, Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(waited.kind(), std::io::ErrorKind::TimedOut);

    let sent = Instant::now();
    tx.send_to(b"hello", rx.local_addr().unwrap())
        .expect("send");
    std::thread::sleep(Duration::from_millis(500));
    let (n, from, at) = arrivals
        .recv(&rx, &mut buf, Duration::ZERO)
        .expect("queued datagram");
    let read = Instant::now();
    assert_eq!((&buf[..n], from), (&b"hello"[..], tx.local_addr().unwrap()));
    // Read >= 500 ms after sending; stamped near the send (wide margins: the clock
    // conversion and scheduling under load add some milliseconds, never hundreds).
    assert!(
        read.duration_since(at) >= Duration::from_millis(250),
        "stamped {:?} before the read: the read time, not the arrival",
        read.duration_since(at)
    );
    let off = if at >= sent {
        at.duration_since(sent)
    } else {
        sent.duration_since(at)
    };
    assert!(
        off < Duration::from_millis(250),
        "{off:?} away from the send"
    );
}
