//! The control plane of the engine: [`EngineControl`] serves the `control` crate's
//! requests (the Unix-socket protocol of `docs/control-protocol.md`) over an
//! [`EngineHandle`], and publishes engine events on an [`EventHub`].
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let engine = engine::Engine::start(engine::EngineConfig::default())?;
//! let hub = control::EventHub::new(1024)?;
//! let handler = engine::control::EngineControl::new(engine.clone(), hub.clone());
//! let server = control::ControlServer::bind_with_events(
//!     control::ServerConfig::new("/tmp/rtc-engine.sock"),
//!     handler.clone(),
//!     hub,
//! )?;
//! # drop(server); handler.shutdown(); engine.shutdown(); Ok(()) }
//! ```
//!
//! Identifiers: control session ids are the engine's [`SessionId`] numbers; rooms are
//! named on the wire and mapped to engine [`RoomId`]s here (names are unique); tracks
//! are media-section ids (`mid`s); shards are shard indices.
//!
//! Placement of new sessions ([`EngineControl::place`]): a session joining a room goes
//! to the shard already holding most of that room's sessions while that shard holds
//! fewer than [`ControlOptions::room_shard_sessions`] of the room's sessions, is below
//! its session cap and is not draining (so a room bigger than one shard's share fills
//! one shard, then the next: its subscriber legs spread in blocks, with one copy of each
//! publisher packet per remote shard); otherwise to the least-loaded non-draining shard, where load is the shard's share of all
//! sessions plus its share of the engine's packet rate (sampled at most every
//! [`ControlOptions::load_sample_interval`]). A `shard` in the request pins it.
//!
//! Layout: this file holds the handler's state and life cycle; the conversions
//! between engine and protocol types live in `wire.rs`, the placement policy in
//! `placement.rs`, room names and room operations in `rooms.rs`, the per-operation
//! dispatch in `dispatch.rs` and the engine-event pump in `pump.rs`.

mod dispatch;
mod placement;
mod plain;
mod pump;
mod relay;
mod rooms;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::{ClientId, EventHub};
use rtc_core::media::Mid;

use crate::api::{MediaDesc, RoomId, SessionId};
use crate::engine::EngineHandle;

pub use rooms::MAX_ROOM_NAME;

/// Tuning of [`EngineControl`].
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// A room's share of one shard: a room's new sessions go to the shard holding most
    /// of the room while that shard holds fewer than this many of the room's sessions
    /// (default 256); beyond it, new members go to the least-loaded shard, and from then
    /// on fill that one (0: every session is placed by load alone).
    pub room_shard_sessions: usize,
    /// Minimum interval between packet-rate samples used for placement (default 1 s).
    pub load_sample_interval: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            room_shard_sessions: 256,
            load_sample_interval: Duration::from_secs(1),
        }
    }
}

struct Sess {
    shard: usize,
    created: Instant,
    owner: ClientId,
    reap: bool,
    media: Vec<MediaDesc>,
    /// The room joined at creation.
    room: Option<RoomId>,
}

impl Sess {
    /// A session created for `owner` now, in no room, that outlives its client's
    /// connection (relay and plain sessions).
    fn unreaped(shard: usize, owner: ClientId, media: Vec<MediaDesc>) -> Sess {
        Sess {
            shard,
            created: Instant::now(),
            owner,
            reap: false,
            media,
            room: None,
        }
    }
}

#[derive(Default)]
struct LoadSample {
    at: Option<Instant>,
    packets: Vec<u64>,
    rates: Vec<f64>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Sess>,
    rooms: HashMap<String, RoomId>,
    /// Track filters of publications: `None` = every inbound track.
    published: HashMap<(SessionId, RoomId), Option<Vec<Mid>>>,
    clients: HashSet<ClientId>,
    load: LoadSample,
}

struct Shared {
    engine: EngineHandle,
    hub: EventHub,
    opts: ControlOptions,
    started: Instant,
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent, so a poisoned lock (a panic
        // in a handler, already reported as `internal`) is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serves control requests over an [`EngineHandle`]; see the module docs.
///
/// [`EngineControl::new`] starts one thread that turns [`EngineHandle::events`] into
/// control [`Event`](control::Event)s; it is the only reader of that channel. Stop it with
/// [`EngineControl::shutdown`] (also run on drop) before or after the engine stops.
pub struct EngineControl {
    shared: Arc<Shared>,
    pump: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EngineControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineControl")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

impl EngineControl {
    /// A handler over `engine` publishing on `events`, with default [`ControlOptions`].
    /// Starts the event thread.
    pub fn new(engine: EngineHandle, events: EventHub) -> Arc<EngineControl> {
        Self::with_options(engine, events, ControlOptions::default())
    }

    /// As [`EngineControl::new`] with explicit options.
    pub fn with_options(
        engine: EngineHandle,
        events: EventHub,
        opts: ControlOptions,
    ) -> Arc<EngineControl> {
        let shared = Arc::new(Shared {
            engine,
            hub: events,
            opts,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let pump = std::thread::Builder::new()
            .name("control-events".into())
            .spawn(move || pump::event_pump(&s));
        let pump = match pump {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the control event thread; no events will be published");
                None
            }
        };
        Arc::new(EngineControl {
            shared,
            pump: Mutex::new(pump),
        })
    }

    /// Stops the event thread. Idempotent.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let t = self.pump.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t
            && t.join().is_err()
        {
            tracing::error!("the control event thread panicked");
        }
    }
}

impl Drop for EngineControl {
    fn drop(&mut self) {
        self.shutdown();
    }
}
