//! The agent's receive side: STUN requests (triggered checks, nominations, role
//! conflicts) and responses to our checks.

use super::*;

/// The transport a received STUN message came over: its protocol, where it came from
/// and the local address it reached.
#[derive(Debug, Clone, Copy)]
struct Path {
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
}

impl IceAgent {
    /// Handles a received STUN message. Messages that fail authentication, are not
    /// Binding, or do not match local state are dropped silently.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        msg: &StunMessage<'_>,
    ) {
        self.last_now = Some(now);
        let path = Path {
            proto,
            source,
            destination,
        };
        if msg.method() != Method::Binding {
            return;
        }
        match msg.class() {
            Class::Request => self.handle_request(now, path, msg),
            Class::Success | Class::Error => {
                self.handle_response(now, path, msg);
                // A pair just became valid: nominate now when nothing better is still
                // pending, instead of waiting for the nomination timer.
                if self.controlling && !self.lite {
                    self.maybe_nominate(now);
                }
            }
            Class::Indication => {}
        }
        self.update_selected(now);
        self.update_state(now);
    }

    fn handle_request(&mut self, now: Instant, path: Path, msg: &StunMessage<'_>) {
        let Path {
            proto,
            source,
            destination,
        } = path;
        let Some((ours, theirs)) = msg.username().and_then(|u| u.split_once(':')) else {
            return;
        };
        if ours != self.local_creds.ufrag
            || self
                .remote_creds
                .as_ref()
                .is_some_and(|rc| rc.ufrag != theirs)
            || !msg.check_integrity(self.local_creds.pass.as_bytes())
            || (msg.has_fingerprint() && !msg.check_fingerprint())
        {
            return;
        }
        let Some(li) = self.locals.iter().position(|c| {
            c.proto() == proto
                && c.addr() == destination
                && matches!(c.kind(), CandidateKind::Host | CandidateKind::Relayed)
        }) else {
            return;
        };
        if !self.lite {
            if self.controlling {
                if let Some(theirs) = msg.ice_controlling() {
                    if self.tie_breaker >= theirs {
                        self.send_response(proto, destination, source, msg, Reply::RoleConflict);
                        return;
                    }
                    self.switch_role(false);
                }
            } else if let Some(theirs) = msg.ice_controlled() {
                if self.tie_breaker >= theirs {
                    self.switch_role(true);
                } else {
                    self.send_response(proto, destination, source, msg, Reply::RoleConflict);
                    return;
                }
            }
        }
        let ri = match self
            .remotes
            .iter()
            .position(|c| c.proto() == proto && c.addr() == source)
        {
            Some(ri) => ri,
            None => {
                if self.remotes.len() >= MAX_REMOTE {
                    return;
                }
                let local_tcp = self.locals[li].tcp_type();
                let prio = msg.priority().unwrap_or_else(|| {
                    Candidate::compute_priority(CandidateKind::PeerReflexive, proto, local_tcp, 1)
                });
                self.remotes.push(Candidate::peer_reflexive(
                    source,
                    source,
                    proto,
                    prio,
                    opposite_tcp(local_tcp),
                ));
                self.remotes.len() - 1
            }
        };
        self.send_response(proto, destination, source, msg, Reply::Success);
        self.discover(proto, source);
        let Some(pi) = self.find_or_create_pair(li, ri) else {
            return;
        };
        let controlling = self.controlling;
        let p = &mut self.pairs[pi];
        if self.lite {
            p.state = PairState::Succeeded;
            p.consent_until = Some(now + CONSENT_TIMEOUT);
            if msg.use_candidate() {
                p.nominated = true;
            }
            return;
        }
        if p.state == PairState::Succeeded {
            if !controlling && msg.use_candidate() {
                p.nominated = true;
            }
            return;
        }
        if !controlling && msg.use_candidate() {
            p.nominate_on_success = true;
        }
        if p.state != PairState::InProgress {
            p.state = PairState::Waiting;
            if !self.triggered.contains(&pi) {
                self.triggered.push_back(pi);
            }
        }
    }

    fn handle_response(&mut self, now: Instant, path: Path, msg: &StunMessage<'_>) {
        let Path {
            proto,
            source,
            destination,
        } = path;
        let Some(pi) = self.pairs.iter().position(|p| {
            p.check
                .as_ref()
                .is_some_and(|c| &c.tid == msg.transaction_id())
        }) else {
            return;
        };
        let Some(rc) = &self.remote_creds else {
            return;
        };
        if !msg.check_integrity(rc.pass.as_bytes())
            || (msg.has_fingerprint() && !msg.check_fingerprint())
        {
            return;
        }
        let (pproto, local_addr, remote_addr) = self.pair_addrs(pi);
        let local_tcp = self.locals[self.pairs[pi].local].tcp_type();
        let Some(mut check) = self.pairs[pi].check.take() else {
            return;
        };
        let spent = std::mem::take(&mut check.contents);
        self.recycle_buffer(spent);
        if source != remote_addr || destination != local_addr || proto != pproto {
            // RFC 8445 §7.2.5.2.1: non-symmetric transport addresses fail the check.
            if !check.consent {
                self.pairs[pi].state = PairState::Failed;
                self.pairs[pi].nominating = false;
            }
            return;
        }
        if msg.class() == Class::Error {
            if check.consent {
                return;
            }
            if msg.error_code().is_some_and(|e| e.code == 487) {
                if check.as_controlling == self.controlling {
                    self.switch_role(!self.controlling);
                }
                self.pairs[pi].state = PairState::Waiting;
                if !self.triggered.contains(&pi) {
                    self.triggered.push_back(pi);
                }
            } else {
                self.pairs[pi].state = PairState::Failed;
                self.pairs[pi].nominating = false;
            }
            return;
        }
        if let Some(mapped) = msg.xor_mapped_address()
            && !self
                .locals
                .iter()
                .any(|l| l.addr() == mapped && l.proto() == proto)
        {
            let prio =
                Candidate::compute_priority(CandidateKind::PeerReflexive, proto, local_tcp, 1);
            self.locals.push(Candidate::peer_reflexive(
                mapped, local_addr, proto, prio, local_tcp,
            ));
        }
        if self.first_valid_at.is_none() {
            self.first_valid_at = Some(now);
        }
        let controlling = self.controlling;
        let p = &mut self.pairs[pi];
        p.state = PairState::Succeeded;
        p.consent_until = Some(now + CONSENT_TIMEOUT);
        if check.use_candidate && controlling {
            p.nominated = true;
            p.nominating = false;
        }
        if !controlling && p.nominate_on_success {
            p.nominated = true;
        }
        self.discover(proto, remote_addr);
    }
}
