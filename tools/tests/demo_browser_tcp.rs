//! ICE-TCP acceptance: headless Chromium in a network namespace this test creates
//! (`unshare -n`, loopback only), where an nftables rule drops every UDP datagram to the
//! engine's ports, joins a room through `rtc-demo` (driving `rtc-engine --tcp-port`) and
//! decodes the others' video: the only way in is the engine's passive TCP candidates.
//! The same scenario as `demo_browser.rs` (`tools/browser/demo-e2e.js`).
//!
//! Needs root (namespaces), `unshare` (util-linux), `ip` (iproute2) and `nft`
//! (nftables): `scripts/test-all.sh` installs them. Fails, never skips.

use std::time::{Duration, Instant};

use control::{ControlClient, Request, Response};

mod browser_common;
use browser_common::*;

#[test]
fn chromium_connects_over_ice_tcp_when_udp_is_blocked() {
    let (_tmp, sock) = scratch_dir("tcp");
    // Fixed ports inside a fresh namespace: nothing else binds there.
    let script = r#"
set -e
ip link set lo up
nft add table inet rtc_tcp_test
nft add chain inet rtc_tcp_test out '{ type filter hook output priority 0; policy accept; }'
nft add rule inet rtc_tcp_test out udp dport 40000-40001 drop
"$ENGINE" --shards 2 --pin false --port 40000 --tcp-port 40100 --control-socket "$SOCK" >/dev/null &
until [ -S "$SOCK" ]; do sleep 0.05; done
"$DEMO" --control "$SOCK" --http 127.0.0.1:8080 >/dev/null &
until (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; do sleep 0.05; done
node "$JS" http://127.0.0.1:8080 tcp
"#;
    let cmd = in_fresh_netns(script, &sock, "demo-e2e.js");
    let driver = Driver::spawn(cmd, true);
    let r = driver.result(Duration::from_secs(55));
    // The engine's view, over its control socket (a path: reachable across namespaces).
    let t0 = Instant::now();
    let stats = loop {
        match ControlClient::connect(&sock).and_then(|mut c| {
            c.request(Request::EngineStats)
                .map_err(std::io::Error::other)
        }) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > Duration::from_secs(5) => panic!("engine.stats: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    drop(driver);

    for k in ["aSeesB", "bSeesA", "cSeesA", "aSeesC"] {
        assert!(num(&r, &[k, "framesDecoded"]) > 0, "{k}: {r:#}");
    }
    let Response::EngineStats(es) = stats else {
        panic!("unexpected engine.stats answer: {stats:?}");
    };
    let authenticated: u64 = es
        .shards
        .iter()
        .map(|s| s.detail.tcp.get("authenticated").copied().unwrap_or(0))
        .sum();
    // Three publishers and their WHEP legs: every session came in over TCP.
    assert!(authenticated >= 6, "TCP connections authenticated: {es:?}");
}
