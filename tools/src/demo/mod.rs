//! `rtc-demo`: WHIP (RFC 9725) / WHEP publishing and viewing over HTTP, plus a browser
//! page with rooms, in front of the engine.
//!
//! - [`backend`]: the [`Backend`] trait (create a session from an offer, publish,
//!   subscribe, close, list rooms, stats, session events) and [`InProcessBackend`],
//!   an engine started inside the demo's process.
//! - [`control_backend`]: [`ControlBackend`], the same over the control socket of a
//!   running `rtc-engine`, using only the public `control` client.
//! - [`cascade_backend`]: [`CascadeBackend`], several engines as one: publishers on
//!   the first, viewers beyond a threshold on the next, joined by relays.
//! - [`server`]: [`DemoServer`], the routes and the bookkeeping of rooms.
//! - [`http`]: the HTTP transport (hyper on a small tokio runtime) with its limits:
//!   head deadline, header and body size caps, connection and in-flight caps, the
//!   `Host` check and the `Origin` allow-list.
//!
//! # HTTP API
//!
//! | request | answer |
//! | --- | --- |
//! | `POST /whip/{room}` (`application/sdp` offer that sends) | `201`, `Location: /whip/{room}/{resource}`, answer |
//! | `DELETE /whip/{room}/{resource}` | `200`; the publisher's viewers are closed too |
//! | `POST /whep/{room}/{publisher}` (offer that receives; the publisher may also be one the engine has in the room that the demo did not create, e.g. a `plain.ingest`) | `201`, `Location: /whep/{room}/{publisher}/{resource}`, answer |
//! | `DELETE /whep/{room}/{publisher}/{resource}` | `200` |
//! | `PATCH` on a session | `405`: no trickle ICE / ICE restart (the engine is ICE-lite and its answer holds all candidates) |
//! | `OPTIONS` on WHIP/WHEP paths | `204` with `Allow`, CORS and `Accept-Post: application/sdp` |
//! | `GET /rooms`, `GET /rooms/{room}` | JSON listings (publishers with id, shard, kinds; viewers) |
//! | `GET /stats` | engine counters per shard |
//! | `GET /` (`/app.js`, `/style.css`) | the page |
//!
//! `{resource}` is a random 128-bit id, so only the creator can end a session. A
//! `201` also carries `X-Session-Id` (the engine session: what viewers pass as
//! `{publisher}`) and `X-Shard`. Errors are `4xx`/`5xx` with a plain-text reason: `400`
//! bad SDP, wrong direction, bad room name or shard hint; `401` wrong bearer token
//! (when `--token` is set; required on WHIP/WHEP only, compared in constant time);
//! `403` a page of a foreign origin (not the server's own, not in `--allow-origin`)
//! sending anything but `GET`/`HEAD`; `404` unknown room, publisher or session; `405`;
//! `408` body not received in time; `413` oversized body (declared or chunked); `415`
//! wrong content type; `421` a `Host` that is not an IP address, `localhost` or in
//! `--allow-host`; `431` oversized head or too many header fields; `503` too many
//! requests in progress.
//!
//! # CORS
//!
//! A request without `Origin` (curl, WHIP clients) gets `Access-Control-Allow-Origin: *`
//! as before; a browser request from the server's own origin or an allowed one gets its
//! origin echoed; any other origin gets no CORS headers. Answers carry `Vary: Origin`.
//!
//! WHEP answers are the engine's answers as they are: each forwarding leg sends on the
//! SSRC its section announces, so the browser binds its track to the leg (and the
//! session answers NACKs for it from its RTX buffer).
//!
//! # Placement
//!
//! Publishers of a room go round-robin over the shards (the first on shard 0, the next
//! on 1, ...); a viewer goes to a shard other than its publisher's (round-robin over the
//! others), so with two or more shards every WHEP leg crosses shards. `?shard=N` on a
//! `POST` overrides both.
pub mod backend;
pub mod cascade_backend;
pub mod control_backend;
pub mod http;
pub mod server;

pub use backend::{
    Backend, BackendError, BackendEvent, InProcessBackend, Kind, SessionRequest, Subscription,
};
pub use cascade_backend::CascadeBackend;
pub use control_backend::ControlBackend;
pub use server::{DemoConfig, DemoServer, PublisherView, RoomView, ViewerView};
