//! The control side's registry of sessions, rooms and legs, and its upkeep.

use std::collections::HashMap;

use crossbeam_channel::Receiver;

use rtc_core::media::Mid;

use super::EngineHandle;
use crate::api::{EngineError, MediaDesc, RoomId, SessionId};
use crate::shard::{Command, RouteSpec};

pub(super) struct RegLeg {
    pub(super) sub_mid: Mid,
    pub(super) publisher: SessionId,
    pub(super) pub_mid: Mid,
    pub(super) ssrc: u32,
    pub(super) room: RoomId,
}

pub(super) struct RegSession {
    pub(super) shard: usize,
    pub(super) media: Vec<MediaDesc>,
    pub(super) legs: Vec<RegLeg>,
}

pub(super) struct RegRoom {
    pub(super) name: String,
    pub(super) publishers: Vec<SessionId>,
    pub(super) members: Vec<SessionId>,
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) sessions: HashMap<SessionId, RegSession>,
    pub(super) rooms: HashMap<RoomId, RegRoom>,
    /// Legs per (publisher, publisher mid, subscriber shard) where the shards differ.
    pub(super) remote_refs: HashMap<(SessionId, Mid, usize), usize>,
    pub(super) next_room: u64,
}

/// A command queued on a shard whose reply is awaited later, after the registry lock is
/// released ([`EngineHandle::wait`]).
pub(super) struct Pending<T> {
    pub(super) shard: usize,
    pub(super) rx: Receiver<T>,
}

/// Replies owed by shards for registry upkeep (legs and remote routes removed or set),
/// collected under the registry lock and awaited without it ([`EngineHandle::settle`]).
/// Dropped unawaited, the commands still run; only their answers are ignored.
#[derive(Default)]
pub(super) struct Replies {
    units: Vec<Pending<()>>,
    flags: Vec<Pending<bool>>,
}

impl EngineHandle {
    /// Awaits every reply in `r` (each within the reply timeout).
    ///
    /// # Errors
    ///
    /// The first failure ([`EngineError::Timeout`], [`EngineError::ShardGone`],
    /// [`EngineError::ShardDown`]); the other replies are still awaited.
    pub(super) fn settle(&self, r: Replies) -> Result<(), EngineError> {
        let mut first = Ok(());
        for p in r.units {
            if let Err(e) = self.wait(p) {
                first = first.and(Err(e));
            }
        }
        for p in r.flags {
            if let Err(e) = self.wait(p) {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Queues the route change for a new remote reference (the first one of its key and
    /// shard turns the publisher's shard's copies on).
    pub(super) fn add_remote_ref(
        &self,
        reg: &mut Registry,
        key: (SessionId, Mid),
        spec: RouteSpec,
        shard: usize,
        out: &mut Replies,
    ) -> Result<(), EngineError> {
        let n = reg.remote_refs.entry((key.0, key.1, shard)).or_insert(0);
        *n += 1;
        if *n == 1 {
            out.units
                .push(self.send(spec.pub_shard, |reply| Command::SetRemote {
                    key,
                    spec,
                    shard,
                    on: true,
                    reply,
                })?);
        }
        Ok(())
    }

    pub(super) fn drop_remote_ref(
        &self,
        reg: &mut Registry,
        key: (SessionId, Mid),
        shard: usize,
        out: &mut Replies,
    ) -> Result<(), EngineError> {
        let Some(n) = reg.remote_refs.get_mut(&(key.0, key.1, shard)) else {
            return Ok(());
        };
        *n = n.saturating_sub(1);
        if *n > 0 {
            return Ok(());
        }
        reg.remote_refs.remove(&(key.0, key.1, shard));
        let Some(pub_shard) = reg.sessions.get(&key.0).map(|s| s.shard) else {
            return Ok(());
        };
        let spec = RouteSpec {
            kind: rtc_core::media::MediaKind::Video,
            pub_shard,
        };
        out.units
            .push(self.send(pub_shard, |reply| Command::SetRemote {
                key,
                spec,
                shard,
                on: false,
                reply,
            })?);
        Ok(())
    }

    pub(super) fn release_remote(
        &self,
        reg: &mut Registry,
        leg: &RegLeg,
        sub_shard: usize,
        out: &mut Replies,
    ) -> Result<(), EngineError> {
        let pub_shard = reg.sessions.get(&leg.publisher).map(|s| s.shard);
        if pub_shard.is_some_and(|p| p != sub_shard) {
            self.drop_remote_ref(reg, (leg.publisher, leg.pub_mid), sub_shard, out)?;
        }
        Ok(())
    }

    /// Removes a leg from the registry and queues its removal on the subscriber's shard.
    pub(super) fn remove_leg(
        &self,
        reg: &mut Registry,
        sub: SessionId,
        sub_mid: Mid,
        out: &mut Replies,
    ) -> Result<(), EngineError> {
        let Some(s) = reg.sessions.get_mut(&sub) else {
            return Ok(());
        };
        let shard = s.shard;
        let Some(i) = s.legs.iter().position(|l| l.sub_mid == sub_mid) else {
            return Ok(());
        };
        let leg = s.legs.remove(i);
        out.flags.push(self.send(shard, |reply| Command::RemoveLeg {
            sub,
            sub_mid,
            reply,
        })?);
        self.release_remote(reg, &leg, shard, out)
    }

    /// Drops a session from the registry: its own legs, legs forwarding it, rooms.
    /// Shard commands that fail here (a shard gone) are ignored: nothing is left to undo.
    pub(super) fn forget_session(&self, reg: &mut Registry, id: SessionId, out: &mut Replies) {
        // Legs that forward this session to others.
        let fed = legs_where(reg, |l| l.publisher == id);
        for (sub, sub_mid) in fed {
            let _ = self.remove_leg(reg, sub, sub_mid, out);
        }
        // Its own legs (as subscriber): release remote references.
        if let Some(s) = reg.sessions.get_mut(&id) {
            let shard = s.shard;
            let legs = std::mem::take(&mut s.legs);
            for l in &legs {
                let _ = self.release_remote(reg, l, shard, out);
            }
        }
        reg.remote_refs.retain(|(p, _, _), _| *p != id);
        for r in reg.rooms.values_mut() {
            r.publishers.retain(|s| *s != id);
            r.members.retain(|s| *s != id);
        }
        reg.sessions.remove(&id);
    }
}

/// `(subscriber, subscriber mid)` of every leg in the registry that `pred` selects.
pub(super) fn legs_where(reg: &Registry, pred: impl Fn(&RegLeg) -> bool) -> Vec<(SessionId, Mid)> {
    reg.sessions
        .iter()
        .flat_map(|(id, s)| {
            s.legs
                .iter()
                .filter(|l| pred(l))
                .map(move |l| (*id, l.sub_mid))
        })
        .collect()
}
