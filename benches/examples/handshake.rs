//! Cost of one session's set-up and handshake (SDP offer/answer, ICE, DTLS, SRTP
//! keying) between a load-generator-like client `Rtc` and an engine-like server `Rtc`
//! (ICE-lite, pacing, RTX buffer, the shard's shared certificate), in memory on a
//! simulated clock: the per-session work behind `rtc-bench storm`, without sockets,
//! the control protocol or the shard loop.
//!
//! ```sh
//! cargo build --release -p benches --example handshake
//! target/release/examples/handshake 300          # µs of CPU per handshake, per side
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/hs.out \
//!     --toggle-collect='*on_server*' target/release/examples/handshake 20
//! callgrind_annotate --inclusive=yes /tmp/hs.out | head -n 60
//! ```
//!
//! Every server-side call (building the `Rtc`, accepting the offer, handling input,
//! polling output) runs inside `on_server`, so the instructions collected there and the
//! CPU time printed as "server" are the engine's share; the rest is the client's.
//! Only `rtc-core`'s public API is used, so the file builds on older revisions for
//! before/after comparisons.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtc_core::dtls::DtlsCert;
use rtc_core::ice::{Candidate, IceCreds};
use rtc_core::media::MediaKind;
use rtc_core::sdp::{Direction, OpusRed};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Input, Output, Protocol, Receive, Rtc};

const CLIENT: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:50000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f` as server work: collected by callgrind's `--toggle-collect='*on_server*'`
/// and its CPU time added to `spent`.
#[inline(never)]
fn on_server<R>(spent: &mut Duration, f: impl FnOnce() -> R) -> R {
    let t = thread_cpu();
    let r = f();
    *spent += thread_cpu().saturating_sub(t);
    r
}

/// Hands `from`'s datagrams to `to` until `from` has nothing more to send; the work on
/// the server's side of either end is charged to `server`.
fn pump(from: &mut Rtc, to: &mut Rtc, from_is_server: bool, now: Instant, server: &mut Duration) {
    let (src, dst) = if from_is_server {
        (addr(SERVER), addr(CLIENT))
    } else {
        (addr(CLIENT), addr(SERVER))
    };
    let mut buf = Vec::new();
    loop {
        let out = if from_is_server {
            on_server(server, || {
                from.poll_output()
                    .map(|o| take(o, &mut buf))
                    .expect("poll_output")
            })
        } else {
            take(from.poll_output().expect("poll_output"), &mut buf)
        };
        match out {
            Some(true) => {}
            Some(false) => continue,
            None => return,
        }
        let input = |to: &mut Rtc| {
            let r = Receive {
                proto: Protocol::Udp,
                source: src,
                destination: dst,
                contents: &buf,
            };
            to.handle_input(Input::Receive(now, r))
                .expect("handle_input");
        };
        if from_is_server {
            input(to);
        } else {
            on_server(server, || input(to));
        }
    }
}

/// `Some(true)`: a datagram copied into `buf`; `Some(false)`: an event; `None`: idle.
fn take(o: Output<'_>, buf: &mut Vec<u8>) -> Option<bool> {
    match o {
        Output::Transmit(t) => {
            buf.clear();
            buf.extend_from_slice(t.contents);
            Some(true)
        }
        Output::Event(_) => Some(false),
        Output::Timeout(_) => None,
    }
}

/// One audio session: the client (as `rtc-loadgen` builds it) offers, the server (as
/// the engine's `prepare_session` builds it) answers, then both run until connected.
fn handshake(client_cert: &DtlsCert, server_cert: &DtlsCert, server: &mut Duration) {
    let mut now = Instant::now();
    let mut c = Rtc::builder()
        .set_rtp_mode(true)
        .set_dtls_cert(client_cert.clone())
        .set_stats_interval(None)
        .build(now)
        .expect("client");
    c.add_local_candidate(Candidate::host(addr(CLIENT), Protocol::Udp).expect("candidate"));
    let mut api = c.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly);
    let (offer, pending) = api.apply().expect("offer");
    let offer = offer.to_sdp_string();

    let (mut s, answer) = on_server(server, || {
        let mut s = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_pacing(true)
            .set_probe_redundancy(false)
            .set_dtls_cert(server_cert.clone())
            .set_local_ice_credentials(IceCreds::random())
            .set_rtx_buffer(512, Duration::from_secs(2))
            .set_opus_red(OpusRed::Prefer)
            .build(now)
            .expect("server");
        s.add_local_candidate(Candidate::host(addr(SERVER), Protocol::Udp).expect("candidate"));
        let offer = SdpOffer::from_sdp_string(&offer).expect("offer text");
        let answer = s.sdp_api().accept_offer(offer).expect("answer");
        (s, answer.to_sdp_string())
    });

    let answer = SdpAnswer::from_sdp_string(&answer).expect("answer text");
    c.sdp_api().accept_answer(pending, answer).expect("accept");
    for _ in 0..200 {
        if c.is_connected() && s.is_connected() {
            return;
        }
        now += Duration::from_millis(5);
        c.handle_input(Input::Timeout(now)).expect("timeout");
        on_server(server, || {
            s.handle_input(Input::Timeout(now)).expect("timeout")
        });
        pump(&mut c, &mut s, false, now, server);
        pump(&mut s, &mut c, true, now, server);
    }
    panic!("handshake did not finish");
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let client_cert = DtlsCert::new_ecdsa_p256().expect("client cert");
    let server_cert = DtlsCert::new_ecdsa_p256().expect("server cert");
    // One untimed handshake: lazily built process-wide state is not per session.
    let mut server = Duration::ZERO;
    handshake(&client_cert, &server_cert, &mut server);
    server = Duration::ZERO;
    let t = thread_cpu();
    for _ in 0..n {
        handshake(&client_cert, &server_cert, &mut server);
    }
    let total = thread_cpu().saturating_sub(t);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n.max(1));
    println!(
        "{n} handshakes: server {:.1} µs, client {:.1} µs, total {:.1} µs of CPU each \
         (server: {:.0} handshakes per CPU-second)",
        per(server),
        per(total.saturating_sub(server)),
        per(total),
        f64::from(n) / server.as_secs_f64().max(1e-9),
    );
}
