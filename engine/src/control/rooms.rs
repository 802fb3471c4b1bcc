//! Room names (the wire names ↔ engine [`RoomId`]s) and the room operations.

use control::{ControlError, Response};

use super::wire::map_err;
use super::{EngineControl, State};
use crate::api::RoomId;

/// Longest room name accepted (bytes).
pub const MAX_ROOM_NAME: usize = 256;

pub(super) fn check_room_name(name: &str) -> Result<(), ControlError> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(ControlError::bad_params(format!(
            "a room name must be 1 to {MAX_ROOM_NAME} bytes"
        )));
    }
    Ok(())
}

impl State {
    pub(super) fn room_name(&self, id: RoomId) -> Option<String> {
        self.rooms
            .iter()
            .find(|(_, r)| **r == id)
            .map(|(n, _)| n.clone())
    }
}

impl EngineControl {
    pub(super) fn room_id(&self, name: &str) -> Result<RoomId, ControlError> {
        self.shared
            .state()
            .rooms
            .get(name)
            .copied()
            .ok_or_else(|| ControlError::not_found(format!("no room {name:?}")))
    }

    /// The room named `name`, created when missing.
    pub(super) fn ensure_room(
        &self,
        name: &control::RoomId,
    ) -> Result<RoomId, crate::api::EngineError> {
        let mut st = self.shared.state();
        match st.rooms.get(&name.0) {
            Some(r) => Ok(*r),
            None => self.shared.engine.create_room(&name.0).inspect(|r| {
                st.rooms.insert(name.0.clone(), *r);
            }),
        }
    }

    pub(super) fn room_create(&self, r: control::RoomRef) -> Result<Response, ControlError> {
        check_room_name(&r.room.0)?;
        let mut st = self.shared.state();
        if st.rooms.contains_key(&r.room.0) {
            return Err(ControlError::already_exists(format!(
                "room {:?} exists",
                r.room.0
            )));
        }
        let id = self.shared.engine.create_room(&r.room.0).map_err(map_err)?;
        st.rooms.insert(r.room.0, id);
        Ok(Response::Done)
    }

    pub(super) fn room_close(&self, r: control::RoomRef) -> Result<Response, ControlError> {
        let id = self.room_id(&r.room.0)?;
        self.shared.engine.close_room(id).map_err(map_err)?;
        let mut st = self.shared.state();
        st.rooms.remove(&r.room.0);
        st.published.retain(|(_, room), _| *room != id);
        for s in st.sessions.values_mut() {
            if s.room == Some(id) {
                s.room = None;
            }
        }
        Ok(Response::Done)
    }

    pub(super) fn room_list(&self) -> Response {
        let rooms = self.shared.engine.list_rooms();
        Response::Rooms(control::RoomList {
            rooms: rooms
                .into_iter()
                .map(|r| control::RoomInfo {
                    room: control::RoomId(r.name),
                    sessions: r.members.iter().map(|s| control::SessionId(s.0)).collect(),
                    publishers: r
                        .publishers
                        .iter()
                        .map(|s| control::SessionId(s.0))
                        .collect(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_bounded() {
        assert!(check_room_name("lobby").is_ok());
        assert!(check_room_name("").is_err());
        assert!(check_room_name(&"x".repeat(MAX_ROOM_NAME + 1)).is_err());
    }
}
