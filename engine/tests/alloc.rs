//! Steady-state forwarding allocates nothing in the shard threads: a counting global
//! allocator counts allocations made on threads the engine's start hook marked.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use engine::io::BackendPreference;
use engine::{Engine, Placement};
use rtc_core::media::MediaKind;
use rtc_core::sdp::Direction;

thread_local! {
    static IN_SHARD: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread records a backtrace: what that allocates is not counted.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}
static SHARD_ALLOCS: AtomicU64 = AtomicU64::new(0);
/// While set, every counted allocation also records where it came from.
static MEASURING: AtomicBool = AtomicBool::new(false);
/// (size, backtrace) of the first allocations counted while [`MEASURING`].
static TRACES: Mutex<Vec<(usize, Backtrace)>> = Mutex::new(Vec::new());
const MAX_TRACES: usize = 8;

struct Counting;

fn count(size: usize) {
    // `try_with`: the flags may be gone while a thread is being torn down.
    if !IN_SHARD.try_with(Cell::get).unwrap_or(false) || TRACING.try_with(Cell::get).unwrap_or(true)
    {
        return;
    }
    SHARD_ALLOCS.fetch_add(1, Ordering::Relaxed);
    if MEASURING.load(Ordering::Relaxed) {
        // Capturing and storing allocate: the guard keeps that out of the count.
        TRACING.with(|t| t.set(true));
        let bt = Backtrace::force_capture();
        if let Ok(mut traces) = TRACES.lock()
            && traces.len() < MAX_TRACES
        {
            traces.push((size, bt));
        }
        TRACING.with(|t| t.set(false));
    }
}

/// The recorded backtraces, reduced to the frames of this workspace's crates.
fn traces() -> String {
    let traces = TRACES.lock().map(|t| {
        t.iter()
            .map(|(size, bt)| {
                let text = bt.to_string();
                let frames: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| {
                        [
                            "engine::",
                            "rtc_core::",
                            "crossbeam",
                            "hdrhistogram",
                            "alloc::",
                        ]
                        .iter()
                        .any(|k| l.contains(k))
                    })
                    .collect();
                format!("{size} bytes:\n  {}", frames.join("\n  "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    traces.unwrap_or_default()
}

// SAFETY: every method forwards to the system allocator with the caller's arguments
// unchanged; counting touches only atomics and const-initialised thread-local `Cell`s;
// recording a backtrace (and its storage) allocates, but under the `TRACING` guard, so
// the nested calls return early and nothing recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
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
    // Warm-up under backlog. Some buffers grow to the largest backlog a shard has worked
    // through in one loop iteration, so a shard that falls behind (CPU load) once grows
    // them once more. Traced under `stress-ng --cpu 2`, those were: the cross-shard
    // `Batch` pool (a new 64 KiB batch when the return queue is empty because the other
    // shard still holds them; bounded by that queue, 2 x `forward_queue`), and in each
    // session's `Rtc` the packet-buffer pool (`BufPool::take`) and the outbox queues
    // (`rtp_in`, `transmits`): a shard drains a session once per iteration, so these hold
    // what one iteration brought in. Send a 2 s backlog at once (the streamer catches up
    // on everything due while we did not step: ~180 video and ~100 audio packets),
    // more than a shard falls behind in the measured window, so that they have grown.
    std::thread::sleep(Duration::from_secs(2));
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(800),
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
    MEASURING.store(true, Ordering::Relaxed);
    stream(
        &mut clients,
        0,
        &mut s,
        Duration::from_millis(1000),
        |_, _| {},
    );
    drive(&mut clients, Duration::from_millis(100), |_| false);
    let a1 = SHARD_ALLOCS.load(Ordering::Relaxed);
    MEASURING.store(false, Ordering::Relaxed);
    let after = engine.stats().unwrap().rtp_forwarded();
    let forwarded = after - before;
    assert!(forwarded >= 300, "forwarded only {forwarded}");
    assert_eq!(
        a1 - a0,
        0,
        "shard allocations across {forwarded} forwarded packets; the first ones:\n{}",
        traces()
    );
    // The counter does count shard allocations (the stats call above allocates there).
    assert!(SHARD_ALLOCS.load(Ordering::Relaxed) > a1);
    engine.shutdown();
}
