//! The plain RTP ingest acceptance test: ffmpeg publishes a 320x240 VP8 test pattern
//! as plain RTP into a `plain.ingest` of a separate `rtc-engine` process (set up over
//! its control socket), and headless Chromium watches it through `rtc-demo --control`'s
//! WHEP endpoint (`tools/browser/whep-view.js`): its `getStats()` must report decoded
//! frames 320 wide.
//!
//! Fails (never skips) when Chromium, node or ffmpeg cannot run: `scripts/test-all.sh`
//! installs them first.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use control::{ControlClient, Request, Response};

mod browser_common;
use browser_common::*;

#[test]
fn chromium_decodes_vp8_that_ffmpeg_sends_to_a_plain_ingest() {
    let stack = DemoStack::start("plain-whep", &["--shards", "2", "--pin", "false"], &[]);
    // The port ffmpeg sends from (and the next one, its RTCP socket) must be free.
    let src_port = loop {
        let s = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let p = s.local_addr().expect("addr").port();
        if p < 65_000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let mut ctl = ControlClient::connect(&stack.sock).expect("control socket");
    let req = Request::PlainIngest(control::PlainIngest {
        source: format!("127.0.0.1:{src_port}"),
        tracks: vec![control::PlainIngestTrack {
            kind: control::MediaKind::Video,
            ssrc: 4242,
            payloads: vec![control::RelayPayload {
                pt: 96,
                codec: "VP8".into(),
                clock_rate: 90_000,
            }],
        }],
        room: Some(control::RoomId("plain".into())),
        srtp: None,
        timeout_ms: None,
        shard: None,
    });
    let Ok(Response::PlainIngested(ing)) = ctl.request(req) else {
        panic!("plain.ingest failed");
    };
    let engine_port = ing.addr.rsplit(':').next().expect("ip:port");
    let url = format!(
        "rtp://{}?localport={src_port}&rtcpport={engine_port}",
        ing.addr
    );
    let _ffmpeg = Reap(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"])
            .args(["-t", "50", "-c:v", "libvpx", "-deadline", "realtime"])
            .args(["-g", "15", "-ssrc", "4242", "-payload_type", "96"])
            .args(["-f", "rtp", &url])
            .stdout(Stdio::null())
            .spawn()
            .expect("ffmpeg must be installed (scripts/test-all.sh installs it)"),
    );
    let publisher = ing.session.0.to_string();
    let driver = Driver::start("whep-view.js", &[&stack.base(), "plain", &publisher, "30"]);
    let r = driver.result(Duration::from_secs(50));
    assert_eq!(num(&r, &["frameWidth"]), 320, "{r}");
    assert_eq!(num(&r, &["frameHeight"]), 240, "{r}");
}
