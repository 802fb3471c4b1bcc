//! Candidate pairs: forming and prioritising them, choosing what to check next,
//! nomination, consent checks and the connection state they add up to.

use super::*;

impl IceAgent {
    pub(super) fn pair_addrs(&self, i: usize) -> (Protocol, SocketAddr, SocketAddr) {
        let p = &self.pairs[i];
        let l = &self.locals[p.local];
        (l.proto(), l.addr(), self.remotes[p.remote].addr())
    }

    pub(super) fn pair_priority(&self, li: usize, ri: usize) -> u64 {
        let l = u64::from(self.locals[li].priority());
        let r = u64::from(self.remotes[ri].priority());
        let (g, d) = if self.controlling { (l, r) } else { (r, l) };
        (1u64 << 32) * g.min(d) + 2 * g.max(d) + u64::from(g > d)
    }

    pub(super) fn recompute_priorities(&mut self) {
        for i in 0..self.pairs.len() {
            self.pairs[i].prio = self.pair_priority(self.pairs[i].local, self.pairs[i].remote);
        }
    }

    pub(super) fn switch_role(&mut self, controlling: bool) {
        if self.controlling == controlling {
            return;
        }
        self.controlling = controlling;
        if !controlling {
            for p in &mut self.pairs {
                p.nominating = false;
            }
        }
        self.recompute_priorities();
    }

    /// Pairs a local and a remote candidate if compatible (RFC 8445 §6.1.2.2–4).
    pub(super) fn form_pair(&mut self, li: usize, ri: usize) {
        let l = &self.locals[li];
        let r = &self.remotes[ri];
        // Server-reflexive locals are replaced by their base, whose host pair exists.
        if matches!(
            l.kind(),
            CandidateKind::ServerReflexive | CandidateKind::PeerReflexive
        ) || l.proto() != r.proto()
            || l.addr().is_ipv4() != r.addr().is_ipv4()
        {
            return;
        }
        if l.proto() == Protocol::Tcp {
            match (l.tcp_type(), r.tcp_type()) {
                (Some(a), Some(b)) if a.pairs_with(b) => {}
                _ => return,
            }
        }
        self.find_or_create_pair(li, ri);
    }

    pub(super) fn find_or_create_pair(&mut self, li: usize, ri: usize) -> Option<usize> {
        if let Some(i) = self
            .pairs
            .iter()
            .position(|p| p.local == li && p.remote == ri)
        {
            return Some(i);
        }
        if self.pairs.len() >= MAX_PAIRS {
            return None;
        }
        let prio = self.pair_priority(li, ri);
        // Few pairs per agent and thousands of agents: no doubling slack.
        self.pairs.reserve_exact(1);
        self.pairs.push(Pair {
            local: li,
            remote: ri,
            prio,
            state: PairState::Waiting,
            check: None,
            nominating: false,
            nominate_on_success: false,
            nominated: false,
            consent_until: None,
            next_consent: None,
        });
        Some(self.pairs.len() - 1)
    }

    pub(super) fn can_initiate(&self, i: usize) -> bool {
        self.locals[self.pairs[i].local].tcp_type() != Some(TcpType::Passive)
    }

    pub(super) fn has_check_work(&self) -> bool {
        self.triggered.iter().any(|&i| {
            self.pairs
                .get(i)
                .is_some_and(|p| p.state == PairState::Waiting)
        }) || (0..self.pairs.len())
            .any(|i| self.pairs[i].state == PairState::Waiting && self.can_initiate(i))
    }

    pub(super) fn next_pair_to_check(&mut self) -> Option<usize> {
        while let Some(i) = self.triggered.pop_front() {
            if self
                .pairs
                .get(i)
                .is_some_and(|p| p.state == PairState::Waiting)
            {
                return Some(i);
            }
        }
        (0..self.pairs.len())
            .filter(|&i| self.pairs[i].state == PairState::Waiting && self.can_initiate(i))
            .max_by_key(|&i| self.pairs[i].prio)
    }

    pub(super) fn maybe_nominate(&mut self, now: Instant) {
        if self.pairs.iter().any(|p| p.nominated || p.nominating) {
            return;
        }
        let Some(best) = (0..self.pairs.len())
            .filter(|&i| {
                let p = &self.pairs[i];
                p.state == PairState::Succeeded && p.consent_until.is_some_and(|t| t > now)
            })
            .max_by_key(|&i| self.pairs[i].prio)
        else {
            return;
        };
        let best_prio = self.pairs[best].prio;
        let better_pending = self.pairs.iter().any(|p| {
            matches!(p.state, PairState::Waiting | PairState::InProgress) && p.prio > best_prio
        });
        if better_pending
            && self
                .first_valid_at
                .is_some_and(|f| now < f + NOMINATION_DELAY)
        {
            return;
        }
        let p = &mut self.pairs[best];
        p.nominating = true;
        p.state = PairState::Waiting;
        self.triggered.push_front(best);
    }

    pub(super) fn build_request(
        &mut self,
        i: usize,
        use_candidate: bool,
    ) -> Option<(TransactionId, Vec<u8>)> {
        let mut buf = self.take_buffer();
        let rc = self.remote_creds.as_ref()?;
        let local = &self.locals[self.pairs[i].local];
        let tid: TransactionId = rand::random();
        let mut w = StunWriter::new(&mut buf, Class::Request, Method::Binding, &tid).ok()?;
        // USERNAME is "remote:local" (RFC 8445 §7.2.2), built on the stack.
        let mut uname = [0u8; 1024];
        let (r, l) = (rc.ufrag.as_bytes(), self.local_creds.ufrag.as_bytes());
        let n = r.len() + 1 + l.len();
        let dst = uname.get_mut(..n)?;
        dst[..r.len()].copy_from_slice(r);
        dst[r.len()] = b':';
        dst[r.len() + 1..].copy_from_slice(l);
        let username = std::str::from_utf8(dst).ok()?;
        w.username(username).ok()?;
        w.priority(Candidate::compute_priority(
            CandidateKind::PeerReflexive,
            local.proto(),
            local.tcp_type(),
            1,
        ))
        .ok()?;
        if self.controlling {
            w.ice_controlling(self.tie_breaker).ok()?;
        } else {
            w.ice_controlled(self.tie_breaker).ok()?;
        }
        if use_candidate {
            w.use_candidate().ok()?;
        }
        w.message_integrity(rc.pass.as_bytes()).ok()?;
        w.fingerprint().ok()?;
        let n = w.finish();
        buf.truncate(n);
        Some((tid, buf))
    }

    pub(super) fn send_check(
        &mut self,
        now: Instant,
        i: usize,
        use_candidate: bool,
        consent: bool,
    ) {
        let Some((tid, contents)) = self.build_request(i, use_candidate) else {
            // Credentials too long to encode: this pair can never be checked.
            if !consent {
                self.pairs[i].state = PairState::Failed;
            }
            return;
        };
        let controlling = self.controlling;
        let p = &mut self.pairs[i];
        let replaced = p.check.replace(Check {
            tid,
            sends: 1,
            rto: RTO_INITIAL,
            next_at: now
                + if consent {
                    Duration::from_millis(CONSENT_MIN_MS)
                } else {
                    RTO_INITIAL
                },
            use_candidate,
            as_controlling: controlling,
            consent,
            contents,
        });
        if !consent {
            p.state = PairState::InProgress;
        }
        if let Some(old) = replaced {
            self.recycle_buffer(old.contents);
        }
        self.transmit_check(i);
    }

    /// Answers the Binding request `msg` (which arrived from `destination` at `source`)
    /// with a success carrying `destination` as XOR-MAPPED-ADDRESS, or with a 487 Role
    /// Conflict error; both end in MESSAGE-INTEGRITY (local password) and FINGERPRINT.
    /// Nothing is sent if the response does not encode.
    pub(super) fn send_response(
        &mut self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        msg: &StunMessage<'_>,
        reply: Reply,
    ) {
        let class = match reply {
            Reply::Success => Class::Success,
            Reply::RoleConflict => Class::Error,
        };
        let mut buf = self.take_buffer();
        let Ok(mut w) = StunWriter::new(&mut buf, class, Method::Binding, msg.transaction_id())
        else {
            return;
        };
        let body = match reply {
            Reply::Success => w.xor_mapped_address(destination),
            Reply::RoleConflict => w.error_code(487, "Role Conflict"),
        };
        let ok = body.is_ok()
            && w.message_integrity(self.local_creds.pass.as_bytes())
                .is_ok()
            && w.fingerprint().is_ok();
        let n = w.finish();
        if ok {
            buf.truncate(n);
            self.transmits.push_back(StunTransmit {
                proto,
                source,
                destination,
                contents: buf,
            });
        }
    }

    pub(super) fn discover(&mut self, proto: Protocol, source: SocketAddr) {
        if !self.discovered.contains(&(proto, source)) {
            self.discovered.push((proto, source));
            self.events
                .push_back(IceAgentEvent::DiscoveredRecv { proto, source });
        }
    }

    pub(super) fn selected_pair(&self) -> Option<usize> {
        let (proto, source, destination) = self.selected?;
        (0..self.pairs.len())
            .filter(|&i| {
                self.pairs[i].nominated && self.pair_addrs(i) == (proto, source, destination)
            })
            .max_by_key(|&i| self.pairs[i].prio)
    }

    pub(super) fn update_selected(&mut self, now: Instant) {
        let Some(best) = (0..self.pairs.len())
            .filter(|&i| self.pairs[i].nominated)
            .max_by_key(|&i| self.pairs[i].prio)
        else {
            return;
        };
        let addrs = self.pair_addrs(best);
        if self.selected == Some(addrs) {
            return;
        }
        self.selected = Some(addrs);
        self.legacy = None;
        self.legacy_lost = false;
        if !self.lite {
            self.pairs[best].next_consent = Some(now + consent_interval());
        }
        let (proto, source, destination) = addrs;
        self.events.push_back(IceAgentEvent::NominatedSend {
            proto,
            source,
            destination,
        });
    }

    pub(super) fn update_state(&mut self, now: Instant) {
        use IceConnectionState as S;
        let checks_pending = !self.triggered.is_empty()
            || self
                .pairs
                .iter()
                .any(|p| matches!(p.state, PairState::Waiting | PairState::InProgress));
        let new = if let Some(i) = self.selected_pair() {
            if self.pairs[i].consent_until.is_some_and(|t| t > now) {
                if self.remote_eoc && !checks_pending {
                    S::Completed
                } else {
                    S::Connected
                }
            } else {
                S::Disconnected
            }
        } else if self.legacy.is_some() {
            S::Connected
        } else if self.legacy_lost {
            // Restarted, and the old pair's consent ran out before a new nomination.
            S::Disconnected
        } else if !self.lite
            && self.remote_eoc
            && self.remote_creds.is_some()
            && !self.remotes.is_empty()
            && !checks_pending
            && self.pairs.iter().all(|p| p.state == PairState::Failed)
        {
            S::Failed
        } else if !self.pairs.is_empty()
            || (self.remote_creds.is_some() && !self.remotes.is_empty())
        {
            S::Checking
        } else {
            self.state
        };
        if new != self.state {
            self.state = new;
            self.events
                .push_back(IceAgentEvent::IceConnectionStateChange(new));
        }
    }
}
