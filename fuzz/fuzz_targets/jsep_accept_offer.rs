#![no_main]
//! JSEP negotiation from arbitrary SDP text.
//!
//! Input: a first byte of options, then the SDP text (UTF-8).
//! - bit 0 clear: a fresh `Rtc` (bit 1: with local audio and video added first, bit 2:
//!   RTP mode) accepts the text as an offer; an answer it produces must parse back.
//! - bit 0 set: an `Rtc` offers audio, video and a data channel (bits 1-2 pick which)
//!   and accepts the text as the answer.
//!
//! Either way the `Rtc` is then driven through a few timeouts, so a negotiated state
//! that later panics (in ICE, DTLS or media setup) is found too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtc_core::channel::ChannelConfig;
use rtc_core::dtls::DtlsCert;
use rtc_core::ice::Candidate;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Input, Output, Protocol, Rtc};

fuzz_target!(|data: &[u8]| {
    let Some((&opts, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    thread_local! {
        static CERT: DtlsCert = DtlsCert::new_ecdsa_p256().expect("cert");
    }
    let now = Instant::now();
    let Ok(local) = "127.0.0.1:5000".parse::<SocketAddr>() else {
        return;
    };
    let Ok(mut rtc) = Rtc::builder()
        .set_rtp_mode(opts & 4 == 4)
        .set_dtls_cert(CERT.with(|c| c.clone()))
        .build(now)
    else {
        return;
    };
    if let Ok(c) = Candidate::host(local, Protocol::Udp) {
        rtc.add_local_candidate(c);
    }
    if opts & 1 == 0 {
        if opts & 2 == 2 {
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Audio, Direction::SendRecv);
            api.add_media(MediaKind::Video, Direction::SendOnly);
            // Local changes stay pending; the remote offer comes first.
        }
        let Ok(offer) = SdpOffer::from_sdp_string(text) else {
            return;
        };
        if let Ok(answer) = rtc.sdp_api().accept_offer(offer) {
            let written = answer.to_sdp_string();
            assert!(
                SdpAnswer::from_sdp_string(&written).is_ok(),
                "our own answer does not parse: {written}"
            );
            // A follow-up offer of our own after the remote one must not panic.
            let mut api = rtc.sdp_api();
            api.add_media(MediaKind::Video, Direction::RecvOnly);
            let _ = api.apply();
        }
    } else {
        let mut api = rtc.sdp_api();
        if opts & 2 == 0 {
            api.add_media(MediaKind::Audio, Direction::SendRecv);
        }
        api.add_media(MediaKind::Video, Direction::SendRecv);
        if opts & 4 == 0 {
            let _ = api.add_channel(ChannelConfig {
                label: "fuzz".into(),
                ..ChannelConfig::default()
            });
        }
        let Some((_offer, pending)) = api.apply() else {
            return;
        };
        let Ok(answer) = SdpAnswer::from_sdp_string(text) else {
            return;
        };
        let _ = rtc.sdp_api().accept_answer(pending, answer);
    }
    let mut t = now;
    for _ in 0..8 {
        t += Duration::from_millis(250);
        if rtc.handle_input(Input::Timeout(t)).is_err() {
            return;
        }
        for _ in 0..64 {
            match rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
});
