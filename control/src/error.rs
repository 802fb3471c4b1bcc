//! Error codes and the error value carried in `{"error": {...}}` responses.

use serde::{Deserialize, Serialize};

/// Every error code the control protocol uses, in one place.
///
/// On the wire each code is a `snake_case` string (`"bad_json"`, `"not_found"`, ...).
/// A client reading a code it does not know (from a newer server) gets [`ErrorCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not valid JSON (or not valid UTF-8).
    BadJson,
    /// The line is JSON but not a request object: `id` or `op` missing or of the wrong type.
    BadRequest,
    /// The `op` names no operation this server knows.
    UnknownOp,
    /// The `params` do not fit the operation (missing field, wrong type, unknown field).
    BadParams,
    /// A line exceeded the maximum line length (1 MiB); the connection is closed.
    LineTooLong,
    /// The named session, room, shard, track or channel does not exist.
    NotFound,
    /// The object to create already exists.
    AlreadyExists,
    /// The peer's uid/gid is not allowed to use the socket; the connection is closed.
    Forbidden,
    /// The engine cannot take the request now (shard draining or full, too many clients).
    Unavailable,
    /// The request conflicts with the current state (e.g. publishing a closed session).
    Conflict,
    /// The engine failed while handling the request (a bug, or a handler panic).
    Internal,
    /// The server is shutting down.
    ShuttingDown,
    /// The client did not read its events fast enough; the connection is closed.
    SlowConsumer,
    /// The shard holds its maximum number of sessions (`max_sessions_per_shard`).
    ShardFull,
    /// The engine holds its maximum number of sessions (`max_sessions`).
    EngineFull,
    /// The offer has more media sections than `max_media_per_session`.
    TooManyMedia,
    /// The engine holds its maximum number of rooms (`max_rooms`).
    TooManyRooms,
    /// The room holds its maximum number of forwarding legs (`max_legs_per_room`).
    TooManyLegs,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire name of the code (`"bad_json"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::BadParams => "bad_params",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ShardFull => "shard_full",
            ErrorCode::EngineFull => "engine_full",
            ErrorCode::TooManyMedia => "too_many_media",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::TooManyLegs => "too_many_legs",
            ErrorCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a [`ControlHandler`](crate::ControlHandler) or by the server,
/// sent to the client as `{"id": ..., "error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl ControlError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }

    /// `bad_params` with a message.
    pub fn bad_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadParams, message)
    }

    /// `not_found` with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `already_exists` with a message.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AlreadyExists, message)
    }

    /// `unavailable` with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `conflict` with a message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// `internal` with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}
