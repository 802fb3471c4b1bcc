#![no_main]
//! Arbitrary datagrams into `Rtc::handle_input` in several states: fresh, configured
//! and checking (remote credentials, candidates and roles set), and after an offer
//! was accepted. The first byte picks the state, the rest is one datagram sent from
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
    match state % 3 {
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
});
