#![no_main]
//! Arbitrary datagrams into `Rtc::handle_input` in several states: fresh, configured
//! and checking (remote credentials, candidates and roles set), after an offer was
//! accepted, and connected (ICE + DTLS + SRTP up with a real peer). The first byte picks the state, the rest is one datagram sent from
//! the remote candidate's address (so it passes ICE's source checks when it can).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtc_core::dtls::DtlsCert;
use rtc_core::ice::{Candidate, IceCreds};
use rtc_core::sdp_api::SdpOffer;
use rtc_core::{Input, Output, Protocol, Receive, Rtc};

const OFFER: &str = include_str!("../../rtc-core/tests/fixtures/sdp/chromium-156-av-datachannel.sdp");

fuzz_target!(|data: &[u8]| {
    let Some((&state, datagram)) = data.split_first() else {
        return;
    };
    thread_local! {
        static CERT: DtlsCert = DtlsCert::new_ecdsa_p256().expect("cert");
    }
    let now = Instant::now();
    let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:39104".parse().unwrap();
    let mut rtc = Rtc::builder()
        .set_rtp_mode(state & 1 == 1)
        .set_ice_lite(state & 2 == 2)
        .set_dtls_cert(CERT.with(|c| c.clone()))
        .build(now)
        .unwrap();
    rtc.add_local_candidate(Candidate::host(local, Protocol::Udp).unwrap());
    if state % 4 == 3 {
        let Some(mut rtc) = connected(state, now, local, remote) else {
            return;
        };
        feed(&mut rtc, datagram, now, local, remote);
        return;
    }
    match state % 4 {
        0 => {}
        1 => {
            let mut d = rtc.direct_api();
            d.set_remote_ice_credentials(IceCreds { ufrag: "abcd".into(), pass: "0123456789012345678901".into() });
            d.set_ice_controlling(state & 4 == 4);
            let _ = d.start_dtls(state & 8 == 8);
            rtc.add_remote_candidate(Candidate::host(remote, Protocol::Udp).unwrap());
        }
        _ => {
            let offer = SdpOffer::from_sdp_string(OFFER).unwrap();
            rtc.sdp_api().accept_offer(offer).unwrap();
        }
    }
    feed(&mut rtc, datagram, now, local, remote);
});

fn feed(rtc: &mut Rtc, datagram: &[u8], now: Instant, local: SocketAddr, remote: SocketAddr) {
    let mut t = now;
    for _ in 0..3 {
        let r = Receive { proto: Protocol::Udp, source: remote, destination: local, contents: datagram };
        let _ = rtc.handle_input(Input::Receive(t, r));
        while let Ok(o) = rtc.poll_output() {
            if let Output::Timeout(_) = o {
                break;
            }
        }
        t += Duration::from_millis(100);
        let _ = rtc.handle_input(Input::Timeout(t));
    }
}

/// A connected `Rtc` (the returned one is `local`), its peer driven to completion
/// in memory. `None` if the handshake did not finish (it always should).
fn connected(state: u8, now: Instant, local: SocketAddr, remote: SocketAddr) -> Option<Rtc> {
    thread_local! {
        static CERTS: (DtlsCert, DtlsCert) =
            (DtlsCert::new_ecdsa_p256().expect("cert"), DtlsCert::new_ecdsa_p256().expect("cert"));
    }
    let (ca, cb) = CERTS.with(|c| c.clone());
    let mut a = Rtc::builder().set_rtp_mode(state & 16 == 16).set_dtls_cert(ca).build(now).ok()?;
    let mut b = Rtc::builder().set_dtls_cert(cb).build(now).ok()?;
    a.add_local_candidate(Candidate::host(local, Protocol::Udp).ok()?);
    b.add_local_candidate(Candidate::host(remote, Protocol::Udp).ok()?);
    a.add_remote_candidate(Candidate::host(remote, Protocol::Udp).ok()?);
    b.add_remote_candidate(Candidate::host(local, Protocol::Udp).ok()?);
    let (ia, fa) = (a.direct_api().local_ice_credentials(), a.direct_api().local_dtls_fingerprint());
    let (ib, fb) = (b.direct_api().local_ice_credentials(), b.direct_api().local_dtls_fingerprint());
    let mut da = a.direct_api();
    da.set_remote_ice_credentials(ib);
    da.set_remote_fingerprint(fb);
    da.set_ice_controlling(false);
    da.start_dtls(state & 8 == 8).ok()?;
    da.start_sctp(None).ok()?;
    let mut db = b.direct_api();
    db.set_remote_ice_credentials(ia);
    db.set_remote_fingerprint(fa);
    db.set_ice_controlling(true);
    db.start_dtls(state & 8 != 8).ok()?;
    db.start_sctp(None).ok()?;
    let mut t = now;
    for _ in 0..200 {
        if a.is_connected() && b.is_connected() {
            return Some(a);
        }
        pump(&mut a, &mut b, t, remote, local);
        pump(&mut b, &mut a, t, local, remote);
        t += Duration::from_millis(10);
        let _ = a.handle_input(Input::Timeout(t));
        let _ = b.handle_input(Input::Timeout(t));
    }
    None
}

/// Moves every datagram `from` wants to send into `to`.
fn pump(from: &mut Rtc, to: &mut Rtc, t: Instant, to_addr: SocketAddr, from_addr: SocketAddr) {
    let mut out = Vec::new();
    while let Ok(o) = from.poll_output() {
        match o {
            Output::Transmit(tx) => out.push(tx.contents.to_vec()),
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
    for d in out {
        let r = Receive { proto: Protocol::Udp, source: from_addr, destination: to_addr, contents: &d };
        let _ = to.handle_input(Input::Receive(t, r));
    }
}
