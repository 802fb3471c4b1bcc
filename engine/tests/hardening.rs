//! Attack tests of the engine's life cycle: sessions that never connect, closing events
//! under a full event queue, a shard thread that dies.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use engine::io::BackendPreference;
use engine::{CloseReason, Engine, EngineEvent, Placement, SessionId, SessionSetup};
use rtc_core::Rtc;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

/// An SDP offer (audio + video, the peer sends) that nobody will ever connect with.
fn offer(sections: usize) -> String {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .expect("rtc");
    let mut api = rtc.sdp_api();
    for i in 0..sections {
        let kind = if i % 2 == 0 {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        api.add_media(kind, Direction::SendOnly);
    }
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

/// Reads engine events until `done` holds or `limit` passes.
fn read_events(
    engine: &engine::EngineHandle,
    limit: Duration,
    mut on: impl FnMut(EngineEvent) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(ev) = engine.events().recv_timeout(Duration::from_millis(50))
            && on(ev)
        {
            return true;
        }
    }
    false
}

#[test]
fn every_session_closed_event_arrives_through_a_tiny_event_queue() {
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    cfg.event_queue = 1;
    let engine = Engine::start(cfg).unwrap();
    let sdp = offer(2);
    let ids: Vec<SessionId> = (0..100)
        .map(|_| {
            engine
                .create_session(SessionSetup::Offer(sdp.clone()), Placement::Auto)
                .unwrap()
                .id
        })
        .collect();
    for id in &ids {
        engine.close_session(*id).unwrap();
    }
    let mut seen = BTreeSet::new();
    read_events(&engine, Duration::from_secs(5), |ev| {
        if let EngineEvent::SessionClosed(id, reason) = ev {
            assert_eq!(reason, CloseReason::Requested);
            assert!(seen.insert(id), "{id} closed twice");
        }
        seen.len() == ids.len()
    });
    assert_eq!(seen, ids.iter().copied().collect::<BTreeSet<_>>());
    engine.shutdown();
}
