//! Interop with a real browser: headless Chromium (Debian `chromium`, driven by
//! `tools/browser/open-page.js`) loads the http-post example's page, sends its fake
//! camera and microphone, and the `Rtc` must get ICE and DTLS up and decrypt at
//! least 100 SRTP packets. Fails (never skips) when the browser cannot run:
//! `scripts/test-all.sh` installs Chromium and the Node packages first.

#[path = "../examples/http-post.rs"]
#[allow(dead_code)]
mod http_post;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/browser")
}

fn run_with_chromium(ice_lite: bool, dtls_server: bool) -> (http_post::Report, Vec<String>) {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core missing in {}: run scripts/test-all.sh (it runs npm ci there)",
        dir.display()
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind http");
    let url = format!("http://{}/", listener.local_addr().expect("local addr"));
    let opts = http_post::Options {
        ice_lite,
        dtls_server,
        rtp_mode: true,
        exit_after_packets: 100,
        deadline: Some(Duration::from_secs(45)),
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
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed to run the browser tests");
    let report = server.join().expect("server thread");
    let _ = child.kill();
    let _ = child.wait();
    (report, rx.try_iter().collect())
}

fn check(ice_lite: bool, dtls_server: bool, profile: &str) {
    let (report, lines) = run_with_chromium(ice_lite, dtls_server);
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
}

// Which SRTP profile lands is decided by the DTLS server: Chromium (BoringSSL)
// picks AES_CM_128_HMAC_SHA1_80 from our ClientHello; dimpl as server picks
// AEAD_AES_256_GCM from Chromium's. Both directions are covered.

#[test]
fn chromium_full_ice_we_are_dtls_client_aes_cm() {
    check(false, false, "Aes128CmSha1_80");
}

#[test]
fn chromium_ice_lite_we_are_dtls_server_aead_gcm() {
    check(true, true, "AeadAes256Gcm");
}

#[test]
fn chromium_full_ice_we_are_dtls_server_aead_gcm() {
    check(false, true, "AeadAes256Gcm");
}
