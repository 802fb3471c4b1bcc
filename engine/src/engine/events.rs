//! [`EngineEvents`]: the receiving end of the engine's events.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};

use crate::api::EngineEvent;

/// The engine's events, from [`EngineHandle::events`](crate::EngineHandle::events).
///
/// Two queues feed it. Closing events ([`EngineEvent::SessionClosed`] and
/// [`EngineEvent::ShardDown`]) have their own queue that never drops: a session is
/// closed once, so it holds at most one entry per session, and closing events not yet
/// read count against [`EngineConfig::max_sessions`](crate::EngineConfig::max_sessions)
/// (a consumer that stops reading eventually stops new sessions, not the record of old
/// ones). Every other event shares a queue of
/// [`EngineConfig::event_queue`](crate::EngineConfig::event_queue) entries and is dropped
/// when it is full. When both hold events, the other queue is read first, so a session's
/// earlier events come before its close.
///
/// Cloning gives another reader of the same queues (each event goes to one reader).
#[derive(Debug, Clone)]
pub struct EngineEvents {
    pub(super) events: Receiver<EngineEvent>,
    pub(super) closed: Receiver<EngineEvent>,
}

impl EngineEvents {
    /// One try on both queues: the event, or whether each queue is disconnected.
    fn poll(&self) -> Result<EngineEvent, (bool, bool)> {
        let a = match self.events.try_recv() {
            Ok(ev) => return Ok(ev),
            Err(e) => e == TryRecvError::Disconnected,
        };
        match self.closed.try_recv() {
            Ok(ev) => Ok(ev),
            Err(e) => Err((a, e == TryRecvError::Disconnected)),
        }
    }

    /// The next event if one is queued.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when none is queued, [`TryRecvError::Disconnected`] when
    /// none is queued and the engine has stopped.
    pub fn try_recv(&self) -> Result<EngineEvent, TryRecvError> {
        match self.poll() {
            Ok(ev) => Ok(ev),
            Err((true, true)) => Err(TryRecvError::Disconnected),
            Err(_) => Err(TryRecvError::Empty),
        }
    }

    /// The next event, waiting up to `timeout` for one.
    ///
    /// # Errors
    ///
    /// [`RecvTimeoutError::Timeout`] when none arrived in time,
    /// [`RecvTimeoutError::Disconnected`] when none is queued and the engine has stopped.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<EngineEvent, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (a_gone, b_gone) = match self.poll() {
                Ok(ev) => return Ok(ev),
                Err((true, true)) => return Err(RecvTimeoutError::Disconnected),
                Err(g) => g,
            };
            // A queue whose senders are all gone is always "ready": leave it out so
            // that the wait does not spin.
            let mut sel = Select::new();
            if !a_gone {
                sel.recv(&self.events);
            }
            if !b_gone {
                sel.recv(&self.closed);
            }
            if sel.ready_deadline(deadline).is_err() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    /// Events queued now (both queues).
    pub fn len(&self) -> usize {
        self.events.len() + self.closed.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.closed.is_empty()
    }

    /// Closing events queued and not yet read.
    pub(super) fn pending_closes(&self) -> usize {
        self.closed.len()
    }
}
