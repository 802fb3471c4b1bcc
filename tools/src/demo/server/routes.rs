//! The HTTP side of the demo: routing, WHIP/WHEP resources, the room listing and the
//! static page.

use std::time::Instant;

use rtc_core::media::MediaKind;
use rtc_core::sdp::{IceFragment, SectionKind, SessionDescription, TRICKLE_ICE_SDPFRAG};
use serde::Serialize;

use super::super::backend::{BackendError, Kind, SessionRequest, Subscription};
use super::super::http::{Request, Response};
use super::{Publisher, Resource, Role, Shared, Viewer};

const INDEX_HTML: &str = include_str!("../../../assets/index.html");
const APP_JS: &str = include_str!("../../../assets/app.js");
const STYLE_CSS: &str = include_str!("../../../assets/style.css");

/// Room names: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_room(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn route(shared: &Shared, req: &Request) -> Response {
    let segs: Vec<&str> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let m = req.method.as_str();
    match (m, segs.as_slice()) {
        ("GET" | "HEAD", []) => Response::new(200, "text/html; charset=utf-8", INDEX_HTML),
        ("GET" | "HEAD", ["app.js"]) => {
            Response::new(200, "text/javascript; charset=utf-8", APP_JS)
        }
        ("GET" | "HEAD", ["style.css"]) => Response::new(200, "text/css; charset=utf-8", STYLE_CSS),
        ("GET", ["rooms"]) => list_rooms(shared),
        ("GET", ["rooms", room]) => match shared.state().view(room) {
            Some(v) => Response::json(200, &v).with("Cache-Control", "no-store"),
            None => Response::text(404, format!("unknown room {room:?}")),
        },
        ("GET", ["stats"]) => match shared.backend.stats() {
            Ok(s) => Response::json(200, &s).with("Cache-Control", "no-store"),
            Err(e) => error_response(&e),
        },
        ("OPTIONS", ["whip", ..] | ["whep", ..]) => options(shared, &segs),
        ("OPTIONS", _) => Response::empty(204)
            .with("Access-Control-Allow-Methods", "GET, OPTIONS")
            .with("Allow", "GET, OPTIONS"),
        (_, ["whip", ..] | ["whep", ..]) => {
            if let Some(denied) = check_token(shared, req) {
                return denied;
            }
            match (m, segs.as_slice()) {
                ("POST", ["whip", room]) => whip_post(shared, req, room),
                ("POST", ["whep", room, publisher]) => whep_post(shared, req, room, publisher),
                ("DELETE", ["whip", room, res]) => delete(shared, Role::Whip, room, res),
                ("DELETE", ["whep", room, _, res]) => delete(shared, Role::Whep, room, res),
                ("PATCH", ["whip", room, res]) => patch(shared, req, Role::Whip, room, res),
                ("PATCH", ["whep", room, _, res]) => patch(shared, req, Role::Whep, room, res),
                (_, ["whip", _]) | (_, ["whep", _, _]) => {
                    Response::text(405, format!("{m} not allowed here; POST an SDP offer"))
                        .with("Allow", "POST, OPTIONS")
                }
                (_, ["whip", _, _]) | (_, ["whep", _, _, _]) => {
                    Response::text(405, format!("{m} not allowed on a session; DELETE ends it"))
                        .with("Allow", "DELETE, PATCH, OPTIONS")
                }
                _ => Response::text(404, "no such resource"),
            }
        }
        ("GET" | "HEAD", _) => Response::text(404, "not found"),
        _ => Response::text(405, format!("{m} not allowed here")).with("Allow", "GET, OPTIONS"),
    }
}

fn options(shared: &Shared, segs: &[&str]) -> Response {
    let endpoint = matches!(
        (segs.first(), segs.len()),
        (Some(&"whip"), 2) | (Some(&"whep"), 3)
    );
    let methods = if endpoint {
        "POST, OPTIONS"
    } else {
        "DELETE, PATCH, OPTIONS"
    };
    let mut r = Response::empty(204)
        .with("Allow", methods)
        .with("Access-Control-Allow-Methods", methods)
        .with(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, If-Match",
        )
        .with("Access-Control-Expose-Headers", EXPOSED)
        .with("Access-Control-Max-Age", "600");
    if endpoint {
        r = r.with("Accept-Post", "application/sdp");
        // RFC 9725 §4.6: ICE servers for the client, before it creates its offer.
        if let Some(link) = ice_server_links(&shared.cfg.ice_servers) {
            r = r.with("Link", link);
        }
    } else {
        r = r.with("Accept-Patch", TRICKLE_ICE_SDPFRAG);
    }
    r
}

/// Response headers a cross-origin page may read (the WHIP/WHEP client needs them).
const EXPOSED: &str = "Location, ETag, Link, Accept-Patch";

/// The `Link` header value advertising `servers` (RFC 9725 §4.6): one link per server,
/// `rel="ice-server"`, with `username`/`credential`/`credential-type="password"` for
/// `URL|USERNAME|CREDENTIAL` entries. `None` without servers.
pub(super) fn ice_server_links(servers: &[String]) -> Option<String> {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let links: Vec<String> = servers
        .iter()
        .map(|s| {
            let mut parts = s.splitn(3, '|');
            let url = parts.next().unwrap_or_default();
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(cred)) = (parts.next(), parts.next()) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quote(user),
                    quote(cred)
                ));
            }
            link
        })
        .collect();
    (!links.is_empty()).then(|| links.join(", "))
}

/// `PATCH` on a WHIP/WHEP session (RFC 9725 §4.3): an `application/trickle-ice-sdpfrag`
/// body with trickled candidates (`204 No Content`) or new ICE credentials, i.e. an ICE
/// restart (`200 OK` with our fragment and a new `ETag`). `If-Match` is required (the
/// RFC makes the client send it): `*` or the session's current entity-tag; another tag
/// gets `412` (the fragment belongs to an older ICE session), none `428`.
fn patch(shared: &Shared, req: &Request, role: Role, room: &str, res: &str) -> Response {
    let (session, etag) = {
        let st = shared.state();
        match st.resources.get(res) {
            Some(r) if r.role == role && r.room == room => (r.session, r.etag.clone()),
            _ => return Response::text(404, "no such session (already ended?)"),
        }
    };
    let ct = req.header("content-type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(TRICKLE_ICE_SDPFRAG) {
        return Response::text(
            415,
            format!("Content-Type must be {TRICKLE_ICE_SDPFRAG}, got {ct:?}"),
        )
        .with("Accept-Patch", TRICKLE_ICE_SDPFRAG);
    }
    let Some(if_match) = req.header("if-match").map(str::trim) else {
        return Response::text(
            428,
            "If-Match is required: the session's ETag for trickle ICE, * for an ICE restart",
        );
    };
    let matches = if_match == "*"
        || if_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == etag);
    if !matches {
        return Response::text(
            412,
            "If-Match does not match the session's ETag (an older ICE session?)",
        )
        .with("ETag", etag);
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return Response::text(400, "the fragment is not UTF-8");
    };
    if let Err(e) = IceFragment::parse(text) {
        return Response::text(400, format!("bad trickle ICE fragment: {e}"));
    }
    match shared.backend.ice_fragment(session, text) {
        Ok(None) => Response::empty(204),
        Ok(Some(ours)) => {
            let etag = format!("\"{}\"", new_resource_id());
            {
                let mut st = shared.state();
                if let Some(r) = st.resources.get_mut(res) {
                    r.etag = etag.clone();
                }
            }
            Response::new(200, TRICKLE_ICE_SDPFRAG, ours).with("ETag", etag)
        }
        Err(e) => error_response(&e),
    }
}

fn check_token(shared: &Shared, req: &Request) -> Option<Response> {
    let want = shared.cfg.token.as_deref()?;
    let got = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if got.is_some_and(|g| token_matches(g.as_bytes(), want.as_bytes())) {
        None
    } else {
        Some(
            Response::text(401, "missing or wrong bearer token")
                .with("WWW-Authenticate", "Bearer realm=\"rtc-demo\""),
        )
    }
}

/// Whether `got` equals the secret `want`, in time that depends only on `want`'s length:
/// every byte of `want` is compared (against `got`'s byte or a stand-in past its end),
/// with no early exit on a mismatch or a length difference.
pub(super) fn token_matches(got: &[u8], want: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let mut same = (got.len() as u64).ct_eq(&(want.len() as u64));
    for (i, w) in want.iter().enumerate() {
        let g = got.get(i).copied().unwrap_or(!*w);
        same &= g.ct_eq(w);
    }
    same.into()
}

fn error_response(e: &BackendError) -> Response {
    let status = match e {
        BackendError::BadRequest(_) => 400,
        BackendError::NotFound(_) => 404,
        BackendError::Conflict(_) => 409,
        BackendError::Unavailable(_) => 503,
        _ => 502,
    };
    Response::text(status, e)
}

/// The audio/video sections of an offer with whether the client sends and receives on
/// them.
fn offer_media(req: &Request) -> Result<Vec<(Kind, bool, bool)>, Response> {
    let ct = req.header("content-type").unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Err(Response::text(
            415,
            format!("Content-Type must be application/sdp, got {ct:?}"),
        )
        .with("Accept-Post", "application/sdp"));
    }
    let text = std::str::from_utf8(&req.body)
        .map_err(|_| Response::text(400, "the offer is not UTF-8"))?;
    let sdp = SessionDescription::parse(text)
        .map_err(|e| Response::text(400, format!("bad SDP offer: {e}")))?;
    let media: Vec<(Kind, bool, bool)> = sdp
        .media
        .iter()
        .filter(|m| m.port != 0)
        .filter_map(|m| {
            let kind = match m.kind {
                SectionKind::Media(MediaKind::Audio) => Kind::Audio,
                SectionKind::Media(MediaKind::Video) => Kind::Video,
                _ => return None,
            };
            let d = sdp.direction_for(m);
            Some((kind, d.can_send(), d.can_recv()))
        })
        .collect();
    if media.is_empty() {
        return Err(Response::text(
            400,
            "the offer has no audio or video section",
        ));
    }
    Ok(media)
}

fn new_resource_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn shard_hint(shared: &Shared, req: &Request) -> Result<Option<usize>, Response> {
    let Some(v) = req.query_param("shard") else {
        return Ok(None);
    };
    let n = shared.backend.shard_count();
    match v.parse::<usize>() {
        Ok(s) if s < n => Ok(Some(s)),
        _ => Err(Response::text(
            400,
            format!("shard must be a number below {n}, got {v:?}"),
        )),
    }
}

fn created(
    shared: &Shared,
    location: String,
    answer: String,
    session: u64,
    shard: usize,
    res: &str,
) -> Response {
    let mut r = Response::new(201, "application/sdp", answer)
        .with("Location", location)
        .with("ETag", initial_etag(res))
        .with("Accept-Patch", TRICKLE_ICE_SDPFRAG)
        .with("Access-Control-Expose-Headers", EXPOSED)
        .with("X-Session-Id", session.to_string())
        .with("X-Shard", shard.to_string());
    if let Some(link) = ice_server_links(&shared.cfg.ice_servers) {
        r = r.with("Link", link);
    }
    r
}

/// The entity-tag a new resource starts with (its id, quoted).
fn initial_etag(res: &str) -> String {
    format!("\"{res}\"")
}

fn whip_post(shared: &Shared, req: &Request, room: &str) -> Response {
    if !valid_room(room) {
        return Response::text(400, "room names are 1-64 of A-Z a-z 0-9 _ -");
    }
    let media = match offer_media(req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let mut kinds: Vec<Kind> = media.iter().filter(|m| m.1).map(|m| m.0).collect();
    kinds.dedup();
    if kinds.is_empty() {
        return Response::text(
            400,
            "a WHIP offer must send media (sendonly or sendrecv audio/video)",
        );
    }
    let hint = match shard_hint(shared, req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    // Placement: publishers of a room go round-robin over the shards, so a room's
    // publishers sit on different cores and forwarding crosses shards.
    let n = shared.backend.shard_count().max(1);
    let shard = hint.unwrap_or_else(|| {
        let mut st = shared.state();
        let r = st.rooms.entry(room.to_owned()).or_default();
        let s = r.next_pub_shard % n;
        r.next_pub_shard = r.next_pub_shard.wrapping_add(1);
        s
    });
    let body = String::from_utf8_lossy(&req.body);
    let c = match shared.backend.create_session(SessionRequest {
        room,
        offer: &body,
        shard: Some(shard),
    }) {
        Ok(c) => c,
        Err(e) => {
            drop_empty_room(shared, room);
            return error_response(&e);
        }
    };
    if let Err(e) = shared.backend.publish(room, c.session) {
        let _ = shared.backend.close(c.session);
        drop_empty_room(shared, room);
        return error_response(&e);
    }
    let res = new_resource_id();
    {
        let mut st = shared.state();
        st.resources.insert(
            res.clone(),
            Resource {
                role: Role::Whip,
                room: room.to_owned(),
                session: c.session,
                etag: initial_etag(&res),
            },
        );
        st.rooms
            .entry(room.to_owned())
            .or_default()
            .publishers
            .insert(
                c.session,
                Publisher {
                    shard: c.shard,
                    kinds,
                    connected: false,
                    since: Instant::now(),
                    resource: res.clone(),
                },
            );
    }
    created(
        shared,
        format!("/whip/{room}/{res}"),
        c.answer,
        c.session,
        c.shard,
        &res,
    )
}

fn drop_empty_room(shared: &Shared, room: &str) {
    let mut st = shared.state();
    if st
        .rooms
        .get(room)
        .is_some_and(|r| r.publishers.is_empty() && r.viewers.is_empty())
    {
        st.rooms.remove(room);
    }
}

/// A publisher the engine has in `room` that this demo did not create (e.g. a plain RTP
/// ingest set up over the control socket, `plain.ingest`): recorded here so that WHEP
/// viewers can watch it. Its shard is not known to the demo (0 is assumed for placing
/// viewers); it leaves like any publisher when its session ends.
fn adopt_publisher(shared: &Shared, room: &str, publisher: u64) {
    let known = shared
        .state()
        .rooms
        .get(room)
        .is_some_and(|r| r.publishers.contains_key(&publisher));
    if known {
        return;
    }
    let Ok(rooms) = shared.backend.list_rooms() else {
        return;
    };
    if !rooms
        .iter()
        .any(|r| r.name == room && r.publishers.contains(&publisher))
    {
        return;
    }
    let mut st = shared.state();
    st.rooms
        .entry(room.to_owned())
        .or_default()
        .publishers
        .entry(publisher)
        .or_insert_with(|| Publisher {
            shard: 0,
            kinds: Vec::new(),
            connected: true,
            since: Instant::now(),
            resource: String::new(),
        });
}

fn whep_post(shared: &Shared, req: &Request, room: &str, publisher: &str) -> Response {
    // The publisher is named by its session id (as listed in `/rooms/{room}`) or by
    // the resource id of its WHIP Location (all a plain WHIP client knows).
    let by_resource = {
        let st = shared.state();
        st.resources
            .get(publisher)
            .filter(|r| r.role == Role::Whip && r.room == room)
            .map(|r| r.session)
    };
    let Some(publisher) = by_resource.or_else(|| publisher.parse::<u64>().ok()) else {
        return Response::text(
            404,
            format!(
                "no publisher {publisher:?} in room {room:?} (use a session id or a WHIP resource id)"
            ),
        );
    };
    let media = match offer_media(req) {
        Ok(m) => m,
        Err(r) => return r,
    };
    if !media.iter().any(|m| m.2) {
        return Response::text(
            400,
            "a WHEP offer must receive media (recvonly audio/video)",
        );
    }
    let hint = match shard_hint(shared, req) {
        Ok(h) => h,
        Err(r) => return r,
    };
    adopt_publisher(shared, room, publisher);
    // `?max_layer=0|1|2`: the viewer receives at most this simulcast layer.
    let max_layer = match req.query_param("max_layer") {
        None => None,
        Some(v) => match v.parse::<u8>() {
            Ok(l) if l <= 2 => Some(l),
            _ => {
                return Response::text(400, format!("max_layer must be 0, 1 or 2 (got {v:?})"));
            }
        },
    };
    // Placement: a viewer goes to a shard other than its publisher's (round-robin over
    // the others), so every WHEP leg exercises cross-shard forwarding when there are
    // several shards.
    let n = shared.backend.shard_count().max(1);
    let shard = {
        let mut st = shared.state();
        let Some(r) = st.rooms.get_mut(room) else {
            return Response::text(404, format!("unknown room {room:?}"));
        };
        let Some(p) = r.publishers.get(&publisher) else {
            return Response::text(404, format!("no publisher {publisher} in room {room:?}"));
        };
        let pub_shard = p.shard;
        hint.unwrap_or_else(|| {
            if n == 1 {
                return 0;
            }
            let k = r.next_view_shard % (n - 1);
            r.next_view_shard = r.next_view_shard.wrapping_add(1);
            (pub_shard + 1 + k) % n
        })
    };
    let body = String::from_utf8_lossy(&req.body);
    let c = match shared.backend.create_viewer_session(SessionRequest {
        room,
        offer: &body,
        shard: Some(shard),
    }) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let legs = match shared.backend.subscribe(Subscription {
        room,
        subscriber: c.session,
        publisher,
    }) {
        Ok(l) => l,
        Err(e) => {
            let _ = shared.backend.close(c.session);
            return error_response(&e);
        }
    };
    if let Some(l) = max_layer
        && let Err(e) = shared.backend.set_max_layer(c.session, l)
    {
        let _ = shared.backend.close(c.session);
        return error_response(&e);
    }
    if legs.is_empty() {
        let _ = shared.backend.close(c.session);
        return Response::text(
            400,
            "none of the offer's receiving sections matches a track of that publisher",
        );
    }
    let answer = c.answer.clone();
    let res = new_resource_id();
    {
        let mut st = shared.state();
        // The publisher may have left meanwhile.
        let Some(r) = st
            .rooms
            .get_mut(room)
            .filter(|r| r.publishers.contains_key(&publisher))
        else {
            drop(st);
            let _ = shared.backend.close(c.session);
            return Response::text(404, format!("publisher {publisher} left room {room:?}"));
        };
        r.viewers.insert(
            c.session,
            Viewer {
                shard: c.shard,
                publisher,
                connected: false,
                resource: res.clone(),
            },
        );
        st.resources.insert(
            res.clone(),
            Resource {
                role: Role::Whep,
                room: room.to_owned(),
                session: c.session,
                etag: initial_etag(&res),
            },
        );
    }
    created(
        shared,
        format!("/whep/{room}/{publisher}/{res}"),
        answer,
        c.session,
        c.shard,
        &res,
    )
}

fn delete(shared: &Shared, role: Role, room: &str, res: &str) -> Response {
    let (session, orphans) = {
        let mut st = shared.state();
        let Some(r) = st.resources.get(res) else {
            return Response::text(404, "no such session (already ended?)");
        };
        if r.role != role || r.room != room {
            return Response::text(404, "no such session in this room");
        }
        let session = r.session;
        (session, st.remove_session(room, session))
    };
    for o in orphans {
        let _ = shared.backend.close(o);
    }
    match shared.backend.close(session) {
        // Already gone in the engine (e.g. failed): the resource is gone either way.
        Ok(()) | Err(BackendError::NotFound(_)) => Response::empty(200),
        Err(e) => error_response(&e),
    }
}

fn list_rooms(shared: &Shared) -> Response {
    #[derive(Serialize)]
    struct Entry {
        room: String,
        publishers: usize,
        viewers: usize,
    }
    let st = shared.state();
    let v: Vec<Entry> = st
        .rooms
        .iter()
        .map(|(name, r)| Entry {
            room: name.clone(),
            publishers: r.publishers.len(),
            viewers: r.viewers.len(),
        })
        .collect();
    Response::json(200, &v).with("Cache-Control", "no-store")
}
