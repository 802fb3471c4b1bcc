//! Steady-state forwarding allocates nothing in the shard threads: a counting global
//! allocator counts allocations made on threads the engine's start hook marked.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, Placement};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

thread_local! {
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
}
static SHARD_ALLOCS: AtomicU64 = AtomicU64::new(0);

struct Counting;

fn count() {
    // `try_with`: the flag may be gone while a thread is being torn down.
    if IN_SHARD.try_with(Cell::get).unwrap_or(false) {
        SHARD_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; counting touches only an atomic and a const-initialised thread-local `Cell`,
// neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_forwarding_does_not_allocate() {
    let mut cfg = engine_config(BackendPreference::Auto, 2);
    cfg.on_thread_start = Some(Arc::new(|_| IN_SHARD.with(|f| f.set(true))));
    // Each leg's RTX ring fills its slots once (that is its warm-up); keep it small
    // so the warm-up below fills it and the measurement sees the steady state.
    cfg.rtx_buffer_packets = 64;
    let engine = Engine::start(cfg).unwrap();
    let room = engine.create_room("alloc").unwrap();
    let pub_media = [
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ];
    let sub_media = [
        (MediaKind::Audio, Direction::RecvOnly),
        (MediaKind::Video, Direction::RecvOnly),
    ];
    let mut clients = vec![Client::connect_sdp(
        "pub",
        &engine,
        Placement::Shard(0),
        &pub_media,
        true,
    )];
    for (i, shard) in [0usize, 1, 1].into_iter().enumerate() {
        clients.push(Client::connect_sdp(
            &format!("sub{i}"),
            &engine,
            Placement::Shard(shard),
            &sub_media,
            false,
        ));
    }
    let ids: Vec<_> = clients.iter().map(|c| c.id()).collect();
    wait_engine_connected(&engine, &mut clients, &ids);
    let publisher = clients[0].id();
    engine.publish(room, publisher).unwrap();
    for c in &clients[1..] {
        engine.subscribe(room, c.id(), publisher).unwrap();
    }
    // Warm-up: pools, maps and queues reach their steady sizes.
    let mut s = Streamer::new();
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1200),
        |_, _| {},
    );
    // No connectivity checks during the measurement: only media flows.
    for c in &mut clients {
        c.block_stun = true;
    }
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(200),
        |_, _| {},
    );

    let before = engine.stats().unwrap().rtp_forwarded();
    let a0 = SHARD_ALLOCS.load(Ordering::Relaxed);
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1000),
        |_, _| {},
    );
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let a1 = SHARD_ALLOCS.load(Ordering::Relaxed);
    let after = engine.stats().unwrap().rtp_forwarded();
    let forwarded = after - before;
    assert!(forwarded >= 300, "forwarded only {forwarded}");
    assert_eq!(
        a1 - a0,
        0,
        "shard allocations across {forwarded} forwarded packets"
    );
    // The counter does count shard allocations (the stats call above allocates there).
    assert!(SHARD_ALLOCS.load(Ordering::Relaxed) > a1);
    engine.shutdown();
}
