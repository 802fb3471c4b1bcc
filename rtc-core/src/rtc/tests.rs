//! Unit tests of the `Rtc` error paths and receive-path steps (a `#[cfg(test)]` module
//! of `rtc`).

use std::error::Error as _;
use std::time::{Duration, Instant};

use super::receive::keyframe_request_due;
use super::{Rtc, RtcError, WriteError};
use crate::media::{MediaKind, Mid};
use crate::sdp::jsep::JsepError;
use crate::sdp::{Direction, Setup};
use crate::sdp_api::SdpOffer;
use crate::srtp::SrtpError;
use crate::streams::RxStream;

fn mid(s: &str) -> Mid {
    Mid::new(s).expect("test mid is valid")
}

/// An offer from a fresh `Rtc`, as SDP text.
fn offer_text(now: Instant) -> String {
    let mut a = Rtc::new(now);
    let mut api = a.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv);
    let (offer, _pending) = api.apply().expect("an added section makes an offer");
    offer.to_sdp_string()
}

fn accept(now: Instant, text: &str) -> Result<(), RtcError> {
    let offer = SdpOffer::from_sdp_string(text).expect("edited offer still parses");
    let mut b = Rtc::new(now);
    b.sdp_api().accept_offer(offer).map(|_| ())
}

#[test]
fn offer_without_fingerprint_is_a_typed_sdp_error() {
    let now = Instant::now();
    let text: String = offer_text(now)
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let err = accept(now, &text).expect_err("no fingerprint");
    assert!(
        matches!(err, RtcError::Sdp(JsepError::MissingFingerprint)),
        "{err:?}"
    );
    let source = err.source().expect("the JSEP cause is the source");
    assert_eq!(
        source.to_string(),
        JsepError::MissingFingerprint.to_string()
    );
}

#[test]
fn holdconn_offer_is_refused_with_its_setup() {
    let now = Instant::now();
    let text = offer_text(now).replace("a=setup:actpass", "a=setup:holdconn");
    let err = accept(now, &text).expect_err("holdconn");
    assert!(
        matches!(
            err,
            RtcError::Sdp(JsepError::BadSetup(Some(Setup::HoldConn)))
        ),
        "{err:?}"
    );
}

#[test]
fn frame_write_with_unknown_payload_type_is_a_typed_write_error() {
    let now = Instant::now();
    let mut rtc = Rtc::new(now);
    let m = mid("a");
    rtc.direct_api().declare_media(m, MediaKind::Audio);
    let w = rtc.writer(m).expect("a send-recv section has a writer");
    let err = w
        .write(111, now, 0, &[1, 2, 3])
        .expect_err("no payload types");
    assert!(
        matches!(
            err,
            RtcError::Write(WriteError::UnknownPayloadType { pt: 111, mid }) if mid == m
        ),
        "{err:?}"
    );
    assert!(err.source().is_some());
}

#[test]
fn write_error_source_walks_to_the_root_cause() {
    let err = RtcError::from(WriteError::from(SrtpError::AuthFailed));
    let write = err.source().expect("write error");
    let srtp = write.source().expect("srtp error");
    assert_eq!(srtp.to_string(), SrtpError::AuthFailed.to_string());
    assert!(srtp.source().is_none());
}

#[test]
fn rtp_write_before_connecting_is_invalid_state() {
    let now = Instant::now();
    let mut rtc = Rtc::new(now);
    let err = rtc
        .direct_api()
        .write_rtp_packet(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1])
        .expect_err("not connected");
    assert!(matches!(err, RtcError::InvalidState(_)), "{err:?}");
}

#[test]
fn keyframe_requests_are_rate_limited_per_stream() {
    let t0 = Instant::now();
    let mut st = RxStream::new(1, None);
    assert!(keyframe_request_due(&mut st, t0));
    assert!(!keyframe_request_due(
        &mut st,
        t0 + Duration::from_millis(100)
    ));
    assert!(keyframe_request_due(
        &mut st,
        t0 + Duration::from_millis(500)
    ));
    assert!(!keyframe_request_due(
        &mut st,
        t0 + Duration::from_millis(600)
    ));
}
