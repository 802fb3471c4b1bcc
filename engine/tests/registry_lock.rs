//! The engine's registry lock is never held across a shard round trip: while one shard is
//! slow to answer a subscribe, unsubscribe, close or drain, control calls that concern
//! other shards (and the registry alone) still complete.
//!
//! A shard is held with the `debug_hold_shard` test hook (it handles nothing until the
//! test releases it), so "slow" is exact and independent of timing; the other calls get
//! 30 s, where they take milliseconds.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use engine::io::BackendPreference;
use engine::{Engine, EngineHandle, Placement, RoomId, SessionId, SessionSetup};
use rtc_core::Rtc;
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;
use test_support::engine_config;

/// An audio + video offer whose peer sends (`SendOnly`) or receives (`RecvOnly`).
fn offer(dir: Direction) -> String {
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .expect("rtc");
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, dir);
    api.add_media(MediaKind::Video, dir);
    let (offer, _pending) = api.apply().expect("offer");
    offer.to_sdp_string()
}

struct Setup {
    engine: EngineHandle,
    room: RoomId,
    /// Publisher and a subscriber on shard 0.
    publisher: SessionId,
    sub0: SessionId,
    /// A subscriber on shard 1 (the shard that will be held).
    sub1: SessionId,
}

fn setup() -> Setup {
    let mut cfg = engine_config(BackendPreference::Portable, 2);
    // The held shard answers only when the test releases it; the slow call must not
    // time out meanwhile.
    cfg.reply_timeout = Duration::from_secs(120);
    let engine = Engine::start(cfg).unwrap();
    let create = |dir, shard| {
        engine
            .create_session(SessionSetup::Offer(offer(dir)), Placement::Shard(shard))
            .unwrap()
            .id
    };
    let publisher = create(Direction::SendOnly, 0);
    let sub0 = create(Direction::RecvOnly, 0);
    let sub1 = create(Direction::RecvOnly, 1);
    let room = engine.create_room("lock").unwrap();
    engine.publish(room, publisher).unwrap();
    Setup {
        engine,
        room,
        publisher,
        sub0,
        sub1,
    }
}

/// Holds shard 1, starts `slow` (a call that needs shard 1's answer), and checks that
/// registry-only calls and calls on shard 0 complete while `slow` is outstanding; then
/// releases the shard and returns `slow`'s result.
fn others_proceed_while<R: Send + 'static>(
    s: &Setup,
    what: &str,
    slow: impl FnOnce(&EngineHandle) -> R + Send + 'static,
) -> R {
    let engine = &s.engine;
    let release = engine.debug_hold_shard(1).unwrap();
    let queued_before = engine.debug_queued_commands(1);
    let e = engine.clone();
    let slow = thread::spawn(move || slow(&e));
    // Event-driven: the slow call is outstanding once its command waits on shard 1.
    let end = Instant::now() + Duration::from_secs(30);
    while engine.debug_queued_commands(1) <= queued_before {
        assert!(Instant::now() < end, "{what}: no command reached shard 1");
        thread::sleep(Duration::from_millis(1));
    }

    let (done_tx, done_rx) = mpsc::channel();
    let (e, room, publisher, sub0) = (engine.clone(), s.room, s.publisher, s.sub0);
    let others = thread::spawn(move || {
        let rooms = e.list_rooms();
        let stats = e.session_stats(publisher).is_ok();
        let other_room = e.create_room("other");
        let legs = e.subscribe(room, sub0, publisher).map_or(0, |l| l.len());
        let unsub = e.unsubscribe(room, sub0, publisher).is_ok();
        let _ = done_tx.send((rooms.len(), stats, other_room.is_ok(), legs, unsub));
    });
    // Milliseconds when nothing waits on the held shard; 30 s is a stall, not load.
    let got = done_rx.recv_timeout(Duration::from_secs(30));
    let outstanding = !slow.is_finished();
    drop(release);
    let slow_result = slow.join().expect("slow call panicked");
    others.join().expect("other calls panicked");
    let (rooms, stats, created, legs, unsub) = got.unwrap_or_else(|_| {
        panic!("{what}: other control calls waited for the held shard (registry lock held)")
    });
    assert!(
        outstanding,
        "{what}: the slow call cannot finish while its shard is held"
    );
    assert!(rooms >= 1, "{what}: rooms listed");
    assert!(stats, "{what}: session_stats on shard 0");
    assert!(created, "{what}: create_room");
    assert_eq!(legs, 2, "{what}: subscribe on shard 0");
    assert!(unsub, "{what}: unsubscribe on shard 0");
    slow_result
}

#[test]
fn subscribe_on_a_slow_shard_does_not_block_other_control_calls() {
    let s = setup();
    let (room, sub1, publisher) = (s.room, s.sub1, s.publisher);
    let legs = others_proceed_while(&s, "subscribe", move |e| e.subscribe(room, sub1, publisher));
    assert_eq!(legs.unwrap().len(), 2, "audio and video legs");
    // The registry and the shard agree afterwards: the legs are there once.
    assert_eq!(s.engine.subscribe(room, sub1, publisher).unwrap().len(), 2);
    s.engine.shutdown();
}

#[test]
fn unsubscribe_on_a_slow_shard_does_not_block_other_control_calls() {
    let s = setup();
    let (room, sub1, publisher) = (s.room, s.sub1, s.publisher);
    s.engine.subscribe(room, sub1, publisher).unwrap();
    let r = others_proceed_while(&s, "unsubscribe", move |e| {
        e.unsubscribe(room, sub1, publisher)
    });
    r.unwrap();
    s.engine.shutdown();
}

#[test]
fn close_on_a_slow_shard_does_not_block_other_control_calls() {
    let s = setup();
    let (room, sub1, publisher) = (s.room, s.sub1, s.publisher);
    s.engine.subscribe(room, sub1, publisher).unwrap();
    let r = others_proceed_while(&s, "close", move |e| e.close_session(sub1));
    r.unwrap();
    assert!(
        s.engine.session_stats(sub1).is_err(),
        "closed session is gone"
    );
    s.engine.shutdown();
}

#[test]
fn drain_of_a_slow_shard_does_not_block_other_control_calls() {
    let s = setup();
    let (room, sub1, publisher) = (s.room, s.sub1, s.publisher);
    s.engine.subscribe(room, sub1, publisher).unwrap();
    let r = others_proceed_while(&s, "drain", |e| e.drain_shard(1, true));
    assert_eq!(r.unwrap(), 1, "the one session on shard 1 closed");
    s.engine.shutdown();
}
