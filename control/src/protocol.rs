//! The wire protocol: requests, responses, events and the line framing.
//!
//! Every message is one JSON object on one line (`\n`-terminated, at most
//! [`MAX_LINE`] bytes). See `docs/control-protocol.md` for the full description.

use serde::de;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ControlError, ErrorCode};
use crate::types::*;

/// The protocol version announced in the hello line and checked by clients.
pub const PROTOCOL_VERSION: u32 = 1;

/// Maximum length of one line in bytes, excluding the `\n` (1 MiB).
pub const MAX_LINE: usize = 1 << 20;

/// The id of a request: a JSON number (`u64`) or a string, echoed in the response.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// A numeric id.
    Num(u64),
    /// A string id.
    Str(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Num(n) => write!(f, "{n}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The first line the server sends: `{"hello": {"protocol": 1, "server": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version ([`PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// The server's name and version, e.g. `"rtc-engine/0.1.0"`.
    pub server: String,
}

mod event_bodies;
mod params;
mod plain;
mod relay;
mod renegotiate;
pub use event_bodies::*;
use params::NoParams;
pub use params::*;
pub use plain::*;
pub use relay::*;
pub use renegotiate::*;

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

impl Request {
    /// Build the request for `kind` from its `params` (`None`/`null` mean "no params").
    ///
    /// # Errors
    /// `bad_params` when the params do not fit the operation.
    pub fn from_params(kind: OpKind, params: Option<Value>) -> Result<Request, ControlError> {
        let params = match params {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(ControlError::bad_params(format!(
                    "{}: `params` must be an object",
                    kind.name()
                )));
            }
        };
        kind.parse_params(params)
    }

    /// Serialise as one request line (`{"id":..,"op":..,"params":..}` plus `\n`).
    pub fn to_line(&self, id: &RequestId) -> Vec<u8> {
        let env = RequestLineRef { id, request: self };
        // Serialising these plain structs (string keys, no custom errors) into a Vec
        // cannot fail.
        let mut v = serde_json::to_vec(&env).expect("request serialises");
        v.push(b'\n');
        v
    }
}

/// The params of operation `kind`, typed as `T` (`NoParams` for operations without).
fn parse_params<T: serde::de::DeserializeOwned>(kind: OpKind, v: Value) -> Result<T, ControlError> {
    serde_json::from_value(v).map_err(|e| ControlError::bad_params(format!("{}: {e}", kind.name())))
}

/// Serialises the `"params"` object of a request (implemented by the operation table).
struct ParamsRef<'a>(&'a Request);

struct RequestLineRef<'a> {
    id: &'a RequestId,
    request: &'a Request,
}

impl Serialize for RequestLineRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let with_params = self.request.has_params();
        let mut m = s.serialize_map(Some(if with_params { 3 } else { 2 }))?;
        m.serialize_entry("id", self.id)?;
        m.serialize_entry("op", self.request.kind().name())?;
        if with_params {
            m.serialize_entry("params", &ParamsRef(self.request))?;
        }
        m.end()
    }
}

/// A parsed request line: its id and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// The id to echo in the response.
    pub id: RequestId,
    /// The request.
    pub request: Request,
}

/// Why a request line was rejected, with the id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct RequestLineError {
    /// The request's id, if the line got that far.
    pub id: Option<RequestId>,
    /// The error to send back.
    pub error: ControlError,
}

/// Parse one request line (without its `\n`; a trailing `\r` is tolerated).
///
/// # Errors
/// `bad_json` (not JSON), `bad_request` (not an object with `id` and `op`),
/// `unknown_op`, `bad_params`, each with the request id when it could be read.
pub fn parse_request_line(line: &[u8]) -> Result<RequestEnvelope, RequestLineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let err = |id: Option<RequestId>, code: ErrorCode, msg: String| RequestLineError {
        id,
        error: ControlError::new(code, msg),
    };
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| err(None, ErrorCode::BadJson, format!("invalid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(err(
            None,
            ErrorCode::BadRequest,
            "a request must be a JSON object".into(),
        ));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => {
            return Err(err(None, ErrorCode::BadRequest, "missing `id`".into()));
        }
        Some(v) => RequestId::deserialize(v).map_err(|_| {
            err(
                None,
                ErrorCode::BadRequest,
                "`id` must be an unsigned integer or a string".into(),
            )
        })?,
    };
    let op = match obj.remove("op") {
        Some(Value::String(op)) => op,
        Some(_) => {
            return Err(err(
                Some(id),
                ErrorCode::BadRequest,
                "`op` must be a string".into(),
            ));
        }
        None => return Err(err(Some(id), ErrorCode::BadRequest, "missing `op`".into())),
    };
    let params = obj.remove("params");
    if let Some(extra) = obj.keys().next() {
        let msg = format!("unknown field `{extra}` in request");
        return Err(err(Some(id), ErrorCode::BadRequest, msg));
    }
    let Some(kind) = OpKind::from_name(&op) else {
        let mut shown: String = op.chars().take(64).collect();
        if shown.len() < op.len() {
            shown.push('…');
        }
        return Err(err(
            Some(id),
            ErrorCode::UnknownOp,
            format!("unknown op `{shown}`"),
        ));
    };
    match Request::from_params(kind, params) {
        Ok(request) => Ok(RequestEnvelope { id, request }),
        Err(e) => Err(RequestLineError {
            id: Some(id),
            error: e,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// The result of `session.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The new session.
    pub session: SessionId,
    /// The shard it runs on.
    pub shard: ShardId,
    /// The SDP answer (when created from an offer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The engine's ICE username fragment.
    pub ice_ufrag: String,
    /// The engine's ICE password.
    pub ice_pwd: String,
    /// The engine's DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// The DTLS role the engine takes.
    pub dtls_role: DtlsRole,
    /// The engine's ICE candidates in SDP attribute syntax.
    pub candidates: Vec<String>,
}

/// The result of `room.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    /// The rooms.
    pub rooms: Vec<RoomInfo>,
}

/// The result of `publish` and `subscribe`: the tracks concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackList {
    /// The tracks.
    pub tracks: Vec<TrackInfo>,
}

/// The result of `shard.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardList {
    /// The shards.
    pub shards: Vec<ShardInfo>,
}

/// The result of `shard.drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    /// The shard, now taking no new sessions.
    pub shard: ShardId,
    /// Sessions still running on it.
    pub sessions: u64,
}

/// The result of `events.subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsSubscribed {
    /// The kinds this connection now receives.
    pub kinds: Vec<EventKind>,
}

// ---------------------------------------------------------------------------------------
// The operation table
// ---------------------------------------------------------------------------------------

/// Generates [`OpKind`], [`Request`] and [`Response`] with everything that dispatches on
/// them (names, params parsing and serialisation, which body answers which operation)
/// from the two tables below, so that an operation is described in one row.
macro_rules! protocol {
    (
        responses {
            $( $(#[$rdoc:meta])* $rvar:ident $( ($rty:ty) )? , )*
        }
        ops {
            $( $(#[$odoc:meta])* $ovar:ident = $oname:literal $( ($pty:ty) )? => $oresp:ident ; )*
        }
    ) => {
        /// The name of an operation (the `"op"` field).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum OpKind {
            $( #[doc = concat!("`", $oname, "`")] $ovar, )*
        }

        impl OpKind {
            /// All operations, in documentation order.
            pub const ALL: [OpKind; [$($oname),*].len()] = [$(OpKind::$ovar),*];

            /// The wire name (`"session.create"`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $( OpKind::$ovar => $oname, )*
                }
            }

            /// The operation with wire name `name`.
            pub fn from_name(name: &str) -> Option<OpKind> {
                match name {
                    $( $oname => Some(OpKind::$ovar), )*
                    _ => None,
                }
            }

            /// The shape of the body a successful response to this operation has.
            fn response_shape(self) -> ResponseShape {
                match self {
                    $( OpKind::$ovar => ResponseShape::$oresp, )*
                }
            }

            /// The request for this operation from its params object.
            fn parse_params(self, params: Value) -> Result<Request, ControlError> {
                let kind = self;
                match kind {
                    $( OpKind::$ovar => protocol!(@parse kind params $ovar $($pty)?), )*
                }
            }
        }

        /// A request: the `"op"` and its typed `"params"`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum Request {
            $(
                #[doc = concat!("`", $oname, "` → [`Response::", stringify!($oresp), "`].")]
                $(#[$odoc])*
                $ovar $( ($pty) )?,
            )*
        }

        impl Request {
            /// The operation.
            pub fn kind(&self) -> OpKind {
                match self {
                    $( Request::$ovar { .. } => OpKind::$ovar, )*
                }
            }

            /// Whether the request line carries a `"params"` member.
            fn has_params(&self) -> bool {
                match self {
                    $( Request::$ovar { .. } => protocol!(@has $($pty)?), )*
                }
            }
        }

        impl Serialize for ParamsRef<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self.0 {
                    $( Request::$ovar $( (protocol!(@bind p $pty)) )? => protocol!(@ser s $(p $pty)?), )*
                }
            }
        }

        /// A successful response body (the `"ok"` object). Which variant is valid for
        /// which operation is given by [`Response::fits`]; on the wire the body carries
        /// no tag.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum Response {
            $( $(#[$rdoc])* $rvar $( ($rty) )?, )*
        }

        /// The variants of [`Response`] without their contents.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum ResponseShape {
            $( $rvar, )*
        }

        impl ResponseShape {
            /// Read a body of this shape.
            fn decode(self, v: Value) -> Result<Response, serde_json::Error> {
                match self {
                    $( ResponseShape::$rvar => protocol!(@decode v $rvar $($rty)?), )*
                }
            }
        }

        impl Response {
            /// The variant, without its contents.
            fn shape(&self) -> ResponseShape {
                match self {
                    $( Response::$rvar { .. } => ResponseShape::$rvar, )*
                }
            }
        }

        impl Serialize for Response {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Response::$rvar $( (protocol!(@bind b $rty)) )? => protocol!(@ser s $(b $rty)?), )*
                }
            }
        }
    };
    (@parse $kind:ident $params:ident $var:ident $t:ty) => {
        Ok(Request::$var(parse_params::<$t>($kind, $params)?))
    };
    (@parse $kind:ident $params:ident $var:ident) => {{
        parse_params::<NoParams>($kind, $params)?;
        Ok(Request::$var)
    }};
    (@has $t:ty) => { true };
    (@has) => { false };
    (@bind $name:ident $t:ty) => { $name };
    (@ser $s:ident $v:ident $t:ty) => { $v.serialize($s) };
    (@ser $s:ident) => { NoParams {}.serialize($s) };
    (@decode $v:ident $var:ident $t:ty) => {
        Ok(Response::$var(serde_json::from_value::<$t>($v)?))
    };
    (@decode $v:ident $var:ident) => {{
        if !$v.is_object() {
            return Err(de::Error::custom("expected an object"));
        }
        Ok(Response::$var)
    }};
}

// Adding an operation: one row in `ops` (plus, if it answers with a new body, one row in
// `responses`), then its arm in the engine's dispatch (`engine/src/control/dispatch.rs`).
protocol! {
    responses {
        /// `session.create`.
        SessionCreated(SessionCreated),
        /// `session.stats`.
        SessionStats(SessionStats),
        /// `session.renegotiate`, `session.ice`.
        Renegotiated(Renegotiated),
        /// `room.list`.
        Rooms(RoomList),
        /// `publish`, `subscribe`.
        Tracks(TrackList),
        /// `engine.stats`.
        EngineStats(EngineStats),
        /// `shard.list`.
        Shards(ShardList),
        /// `shard.drain`.
        Draining(DrainStatus),
        /// `events.subscribe`.
        EventsSubscribed(EventsSubscribed),
        /// `relay.listen`.
        RelayInvite(RelayInvite),
        /// `relay.connect`.
        RelayAnswer(RelayAnswer),
        /// `relay.publish`.
        RelayTrack(RelayTrack),
        /// `plain.egress`.
        PlainEgressed(PlainEgressed),
        /// `plain.ingest`.
        PlainIngested(PlainIngested),
        /// Operations with nothing to report: `{}`.
        Done,
    }
    ops {
        SessionCreate = "session.create" (SessionCreate) => SessionCreated;
        SessionClose = "session.close" (SessionRef) => Done;
        SessionStats = "session.stats" (SessionRef) => SessionStats;
        /// The peer's new offer → our answer (added/removed tracks, ICE restart).
        SessionRenegotiate = "session.renegotiate" (SessionRenegotiate) => Renegotiated;
        /// A trickle ICE fragment: candidates, or new credentials (ICE restart → our fragment).
        SessionIce = "session.ice" (SessionIce) => Renegotiated;
        /// Our offer on a live session (sections to add/remove, ICE restart).
        SessionOffer = "session.offer" (SessionOffer) => Renegotiated;
        /// Their answer to our `session.offer`.
        SessionAnswer = "session.answer" (SessionAnswer) => Renegotiated;
        RoomCreate = "room.create" (RoomRef) => Done;
        /// Closes the room's forwarding, not its sessions.
        RoomClose = "room.close" (RoomRef) => Done;
        RoomList = "room.list" => Rooms;
        /// Answers with the published tracks.
        Publish = "publish" (Publish) => Tracks;
        /// Answers with the tracks now forwarded.
        Subscribe = "subscribe" (Subscribe) => Tracks;
        Unsubscribe = "unsubscribe" (Subscribe) => Done;
        KeyframeRequest = "keyframe.request" (KeyframeRequest) => Done;
        /// Re-runs the subscriber's bandwidth allocation at once.
        TrackSetPreference = "track.set_preference" (TrackPreference) => Done;
        EngineStats = "engine.stats" => EngineStats;
        ShardList = "shard.list" => Shards;
        ShardDrain = "shard.drain" (ShardRef) => Draining;
        /// Handled by the server itself.
        EventsSubscribe = "events.subscribe" (EventsSubscribe) => EventsSubscribed;
        /// Handled by the server itself.
        EventsUnsubscribe = "events.unsubscribe" => Done;
        ChannelSend = "channel.send" (ChannelSend) => Done;
        /// The receiving end of a relay to another engine.
        RelayListen = "relay.listen" (RelayListen) => RelayInvite;
        /// The sending end, from the listener's invitation.
        RelayConnect = "relay.connect" (RelayConnect) => RelayAnswer;
        /// Completes the listening end with the connecting engine's answer.
        RelayAccept = "relay.accept" (RelayAccept) => Done;
        /// Sends a publisher's track over a relay.
        RelayPublish = "relay.publish" (RelayPublish) => RelayTrack;
        /// Stops sending a relayed track.
        RelayUnpublish = "relay.unpublish" (RelayTrackRef) => Done;
        /// Takes a relayed track on the receiving end.
        RelayAttach = "relay.attach" (RelayAttach) => Done;
        /// Closes a relay (both ends report `relay.down`).
        RelayClose = "relay.close" (RelayRef) => Done;
        /// Sends a room's tracks as plain RTP/SRTP to a UDP address (one session per track).
        PlainEgress = "plain.egress" (PlainEgress) => PlainEgressed;
        /// Receives plain RTP/SRTP from a UDP source as a publisher session.
        PlainIngest = "plain.ingest" (PlainIngest) => PlainIngested;
    }
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Response {
    /// Whether this body is the right shape for operation `kind`.
    pub fn fits(&self, kind: OpKind) -> bool {
        self.shape() == kind.response_shape()
    }

    /// Read the `"ok"` body of a response to operation `kind`.
    ///
    /// # Errors
    /// When the body does not have the shape `kind` answers with.
    pub fn from_value(kind: OpKind, v: Value) -> Result<Response, serde_json::Error> {
        kind.response_shape().decode(v)
    }
}

#[derive(Serialize)]
struct OkLine<'a> {
    id: &'a RequestId,
    ok: &'a Response,
}

#[derive(Serialize)]
struct ErrLine<'a> {
    id: Option<&'a RequestId>,
    error: &'a ControlError,
}

/// Serialise a success response line (with its `\n`).
pub fn response_line(id: &RequestId, resp: &Response) -> Vec<u8> {
    // Plain data with string keys; serde_json writes non-finite floats as null; a Vec
    // writer cannot fail. So this cannot fail.
    let mut v = serde_json::to_vec(&OkLine { id, ok: resp }).expect("response serialises");
    v.push(b'\n');
    v
}

/// Serialise an error response line (with its `\n`); `id` is `null` when unknown.
pub fn error_line(id: Option<&RequestId>, err: &ControlError) -> Vec<u8> {
    // Two strings and an enum: cannot fail.
    let mut v = serde_json::to_vec(&ErrLine { id, error: err }).expect("error serialises");
    v.push(b'\n');
    v
}

/// Serialise the hello line (with its `\n`).
pub fn hello_line(server: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct HelloLine<'a> {
        hello: &'a Hello,
    }
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        server: server.to_owned(),
    };
    // A number and a string: cannot fail.
    let mut v = serde_json::to_vec(&HelloLine { hello: &hello }).expect("hello serialises");
    v.push(b'\n');
    v
}

/// A line received by a client, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerLine {
    /// The hello line.
    Hello(Hello),
    /// A response: its id (`None` for errors about unparseable lines) and the
    /// `"ok"` body (still untyped: the op decides its type) or the error.
    Response {
        /// The echoed request id.
        id: Option<RequestId>,
        /// The body or the error.
        result: Result<Value, ControlError>,
    },
    /// An event.
    Event(Event),
}

/// Parse one line sent by the server (without its `\n`).
///
/// # Errors
/// When the line is not JSON or none of the three shapes.
pub fn parse_server_line(line: &[u8]) -> Result<ServerLine, serde_json::Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let v: Value = serde_json::from_slice(line)?;
    let Value::Object(mut obj) = v else {
        return Err(de::Error::custom("a line must be a JSON object"));
    };
    if let Some(h) = obj.remove("hello") {
        return Ok(ServerLine::Hello(serde_json::from_value(h)?));
    }
    if obj.contains_key("event") {
        return Ok(ServerLine::Event(serde_json::from_value(Value::Object(
            obj,
        ))?));
    }
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(serde_json::from_value(v)?),
    };
    if let Some(ok) = obj.remove("ok") {
        return Ok(ServerLine::Response { id, result: Ok(ok) });
    }
    if let Some(e) = obj.remove("error") {
        return Ok(ServerLine::Response {
            id,
            result: Err(serde_json::from_value(e)?),
        });
    }
    Err(de::Error::custom(
        "a line needs `hello`, `event`, `ok` or `error`",
    ))
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// Generates [`EventKind`] and [`Event`] from one table: a row per event with its wire
/// name and payload type.
macro_rules! events {
    ( $( $(#[$doc:meta])* $var:ident = $name:literal ($ty:ty) ; )* ) => {
        /// The kind of an event (the `"event"` field), used to filter subscriptions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum EventKind {
            $( #[doc = concat!("`", $name, "`")] #[serde(rename = $name)] $var, )*
        }

        impl EventKind {
            /// All kinds.
            pub const ALL: [EventKind; [$($name),*].len()] = [$(EventKind::$var),*];

            /// The wire name.
            pub fn name(self) -> &'static str {
                match self {
                    $( EventKind::$var => $name, )*
                }
            }

            /// The kind with wire name `name`.
            pub fn from_name(name: &str) -> Option<EventKind> {
                match name {
                    $( $name => Some(EventKind::$var), )*
                    _ => None,
                }
            }
        }

        /// An event pushed to subscribed clients: `{"event": "<kind>", "data": {...}}`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "event", content = "data")]
        #[non_exhaustive]
        pub enum Event {
            $( $(#[$doc])* #[serde(rename = $name)] $var($ty), )*
        }

        impl Event {
            /// The event's kind.
            pub fn kind(&self) -> EventKind {
                match self {
                    $( Event::$var(_) => EventKind::$var, )*
                }
            }
        }
    };
}

// Adding an event: one row here, then where the engine raises it
// (`engine/src/control/pump.rs` or `dispatch.rs`).
events! {
    /// A session changed state.
    SessionState = "session.state" (SessionStateChange);
    /// A track appeared.
    TrackAdded = "track.added" (TrackChange);
    /// A track went away.
    TrackRemoved = "track.removed" (TrackChange);
    /// A keyframe was requested from a publisher.
    KeyframeRequested = "keyframe.requested" (KeyframeRequested);
    /// A session failed (ICE/DTLS failure, consent expiry).
    SessionFailed = "session.failed" (SessionFailure);
    /// A session's code panicked; the shard isolated and closed it.
    SessionPanicked = "session.panicked" (SessionFailure);
    /// A data-channel message arrived.
    ChannelMessage = "channel.message" (ChannelMessage);
    /// A shard thread died; its sessions are closed and no new session goes there.
    ShardDown = "shard.down" (ShardFailure);
    /// Layers of a published track that no subscriber forwards.
    TrackLayersUnused = "track.layers_unused" (TrackLayersUnused);
    /// The loudest speakers of a room changed.
    RoomActiveSpeakers = "room.active_speakers" (RoomActiveSpeakers);
    /// A relay to another engine ended.
    RelayDown = "relay.down" (RelayDown);
}

/// `track.layers_unused`: spatial layers of a published track that no subscriber
/// forwards (the publisher may stop encoding them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackLayersUnused {
    /// The publishing session.
    pub publisher: SessionId,
    /// Its track.
    pub track: TrackId,
    /// The unused layer indices (0 = lowest).
    pub layers: Vec<u8>,
}

/// `room.active_speakers`: the loudest publishers of a room, loudest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomActiveSpeakers {
    /// The room.
    pub room: RoomId,
    /// The speaking sessions, loudest first (empty: silence).
    pub sessions: Vec<SessionId>,
}

impl EventKind {
    /// The kind's bit in a subscription mask.
    pub(crate) fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl Event {
    /// Serialise as one event line (with its `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        // Plain data with string keys into a Vec: cannot fail.
        let mut v = serde_json::to_vec(self).expect("event serialises");
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kind_names_agree_with_serde() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
            let json = serde_json::to_value(k).expect("serialises");
            assert_eq!(json, Value::String(k.name().to_owned()));
        }
        assert_eq!(EventKind::from_name("nope"), None);
    }

    #[test]
    fn fits_and_from_value_agree() {
        // An empty object decodes only as `Done`, and `Done` fits exactly those ops.
        for k in OpKind::ALL {
            let decoded = Response::from_value(k, Value::Object(serde_json::Map::new()));
            assert_eq!(decoded.is_ok(), Response::Done.fits(k), "{k}");
            if let Ok(r) = decoded {
                assert!(r.fits(k), "{k}");
            }
        }
        assert!(Response::from_value(OpKind::SessionClose, Value::Null).is_err());
    }

    #[test]
    fn params_presence_follows_the_table() {
        let line = Request::RoomList.to_line(&RequestId::Num(1));
        assert_eq!(line, b"{\"id\":1,\"op\":\"room.list\"}\n");
        let line = Request::RoomCreate(RoomRef {
            room: RoomId("a".into()),
        })
        .to_line(&RequestId::Num(2));
        assert_eq!(
            line,
            b"{\"id\":2,\"op\":\"room.create\",\"params\":{\"room\":\"a\"}}\n"
        );
    }
}
