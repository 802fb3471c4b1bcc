//! Renegotiation of live sessions through `EngineHandle::renegotiate`: rtc-core peers on
//! loopback re-offer to add a track (forwarded at once to the subscriber that already
//! receives the publisher), remove it again (its leg ends, the rest keeps flowing) and
//! restart ICE (media keeps flowing on the new credentials).

mod common;

use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, EngineError, Placement};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use rtc_core::sdp_api::{SdpAnswer, SdpApi};

/// Re-offers from client `c` with the changes `change` made, applies the engine's answer.
fn reoffer(
    engine: &engine::EngineHandle,
    c: &mut Client,
    change: impl FnOnce(&mut SdpApi<'_>),
) -> engine::Renegotiation {
    let mut api = c.rtc.sdp_api();
    change(&mut api);
    let (offer, pending) = api.apply().expect("a change to offer");
    let r = engine.renegotiate(c.id(), &offer.to_sdp_string()).unwrap();
    let answer = SdpAnswer::from_sdp_string(r.answer.as_deref().unwrap()).unwrap();
    c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    r
}

fn count(c: &Client, kind: MediaKind) -> usize {
    c.rtp
        .iter()
        .filter(|p| check_payload(&p.payload).is_some_and(|(k, _)| k == kind))
        .count()
}

/// Streams video only (the Streamer also sends audio) for `dur`.
fn video_for(clients: &mut [Client], seq: &mut u32, dur: Duration) {
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let now = Instant::now();
        for k in 0..3 {
            let i = *seq;
            clients[0].write_rtp(
                VIDEO_PT,
                i as u16,
                3000 * (i / 3),
                VIDEO_SSRC,
                k == 2,
                &payload(MediaKind::Video, i),
            );
            *seq += 1;
        }
        clients[0].drain(now);
        drive(clients, Duration::from_millis(33), |_| false);
    }
}

#[test]
fn reoffers_add_and_remove_tracks_and_restart_ice_on_live_sessions() {
    let engine = Engine::start(engine_config(BackendPreference::Portable, 2)).unwrap();
    let room = engine.create_room("reneg").unwrap();
    let mut clients = vec![
        Client::connect_sdp(
            "pub",
            &engine,
            Placement::Shard(0),
            &[(MediaKind::Video, Direction::SendOnly)],
            false,
        ),
        Client::connect_sdp(
            "sub",
            &engine,
            Placement::Shard(1),
            &[
                (MediaKind::Video, Direction::RecvOnly),
                (MediaKind::Audio, Direction::RecvOnly),
            ],
            false,
        ),
    ];
    let (p, s) = (clients[0].id(), clients[1].id());
    wait_engine_connected(&engine, &mut clients, &[p, s]);
    engine.publish(room, p).unwrap();
    assert_eq!(engine.subscribe(room, s, p).unwrap().len(), 1, "video only");

    // The publisher adds an audio track: the engine forwards it to the subscriber
    // without a new subscribe.
    let r = reoffer(&engine, &mut clients[0], |api| {
        api.add_media(MediaKind::Audio, Direction::SendOnly);
    });
    assert_eq!(r.added.len(), 1, "{r:?}");
    assert!(r.removed.is_empty() && !r.ice_restarted);
    let audio_mid = r.added[0];
    assert_eq!(engine.leg_layers(s).unwrap().len(), 2);
    let mut st = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut st,
        Duration::from_millis(1500),
        |_, _| {},
    );
    // Loopback, no loss: a generous floor (half of what was sent) that a stall fails.
    let (v, a) = (
        count(&clients[1], MediaKind::Video),
        count(&clients[1], MediaKind::Audio),
    );
    assert!(
        v as u32 > st.video_sent / 2,
        "video {v} of {}",
        st.video_sent
    );
    assert!(
        a as u32 > st.audio_sent / 2,
        "audio {a} of {}",
        st.audio_sent
    );

    // The publisher removes the audio track again: its leg ends, video goes on.
    let r = reoffer(&engine, &mut clients[0], |api| {
        api.remove_media(audio_mid).unwrap();
    });
    assert_eq!(r.removed, vec![audio_mid], "{r:?}");
    assert_eq!(engine.leg_layers(s).unwrap().len(), 1);
    drive(&mut clients, Duration::from_millis(200), |_| false);
    let audio_before = count(&clients[1], MediaKind::Audio);
    let video_before = count(&clients[1], MediaKind::Video);
    let mut seq = st.video_sent;
    video_for(&mut clients, &mut seq, Duration::from_millis(700));
    assert!(count(&clients[1], MediaKind::Video) > video_before + 20);
    assert_eq!(count(&clients[1], MediaKind::Audio), audio_before);

    // ICE restart by re-offer: new engine credentials, and media keeps flowing once
    // the publisher's checks with the new ones nominate a pair.
    let before = clients[0].rtc.direct_api().local_ice_credentials();
    let r = reoffer(&engine, &mut clients[0], |api| api.ice_restart());
    assert!(r.ice_restarted, "{r:?}");
    assert_ne!(clients[0].rtc.direct_api().local_ice_credentials(), before);
    let video_before = count(&clients[1], MediaKind::Video);
    video_for(&mut clients, &mut seq, Duration::from_millis(1500));
    assert!(count(&clients[1], MediaKind::Video) > video_before + 30);
    assert!(!clients[0].failed && !clients[1].failed);

    // The engine offers: a new section to send on to the subscriber; its answer
    // completes the change.
    let before = engine.leg_layers(s).unwrap().len();
    let r = engine
        .create_offer(s, &[(MediaKind::Video, Direction::SendOnly)], &[], false)
        .unwrap();
    let offer = rtc_core::sdp_api::SdpOffer::from_sdp_string(r.offer.as_deref().unwrap()).unwrap();
    assert!(r.added.is_empty(), "added once answered: {r:?}");
    let answer = clients[1].rtc.sdp_api().accept_offer(offer).unwrap();
    let r = engine.accept_answer(s, &answer.to_sdp_string()).unwrap();
    assert_eq!(r.added.len(), 1, "{r:?}");
    assert_eq!(r.media.len(), 3);
    assert_eq!(clients[1].rtc.media().count(), 3);
    assert_eq!(engine.leg_layers(s).unwrap().len(), before);
    // No offer awaits an answer now.
    assert!(matches!(
        engine.accept_answer(s, &answer.to_sdp_string()),
        Err(EngineError::Rtc(_))
    ));
    drive(&mut clients, Duration::from_millis(300), |_| false);
    assert!(!clients[0].failed && !clients[1].failed);

    // Errors: bad SDP, unknown session.
    assert!(matches!(
        engine.renegotiate(p, "not sdp"),
        Err(EngineError::Rtc(_))
    ));
    assert!(matches!(
        engine.renegotiate(engine::SessionId(999_999), "v=0\r\n"),
        Err(EngineError::Rtc(_) | EngineError::UnknownSession(_))
    ));
    assert!(matches!(
        engine.ice_fragment(p, "v=0\r\n"),
        Err(EngineError::Rtc(_))
    ));
    engine.shutdown();
}
