//! The ICE agent state machine.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{Candidate, CandidateKind, IceCreds, Protocol, TcpType};
use crate::stun::{Class, Method, StunMessage, StunWriter, TransactionId};

/// Pacing interval between checks (RFC 8445 §14.2, default 50 ms).
const TA: Duration = Duration::from_millis(50);
/// Initial retransmission timeout of a connectivity check.
const RTO_INITIAL: Duration = Duration::from_millis(250);
/// Cap on the doubled retransmission timeout.
const RTO_MAX: Duration = Duration::from_millis(3000);
/// Transmissions of one check before its pair fails.
const MAX_SENDS: u32 = 9;
/// Consent expires this long after the last response (RFC 7675 §5.1).
const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Consent checks are sent every 4–6 s, randomised (RFC 7675 §5.1).
const CONSENT_MIN_MS: u64 = 4000;
const CONSENT_MAX_MS: u64 = 6000;
/// How long the controlling agent waits for better pairs before nominating.
const NOMINATION_DELAY: Duration = Duration::from_millis(1000);
/// Limits against resource exhaustion by a peer.
const MAX_PAIRS: usize = 100;
const MAX_REMOTE: usize = 50;
/// Buffer size for the STUN messages the agent builds.
const STUN_BUF: usize = 1280;

/// The kind of response the agent sends to a Binding request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    /// Success response with the requester's address.
    Success,
    /// 487 Role Conflict error response (RFC 8445 §7.3.1.1).
    RoleConflict,
}

/// A STUN datagram the agent wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunTransmit {
    /// Transport to send on.
    pub proto: Protocol,
    /// Local address to send from.
    pub source: SocketAddr,
    /// Remote address to send to.
    pub destination: SocketAddr,
    /// The encoded STUN message (unframed; over TCP apply RFC 4571 framing).
    pub contents: Vec<u8>,
}

/// Overall ICE connection state, in the spirit of the W3C `RTCIceConnectionState`.
///
/// - `New`: no remote credentials/candidates yet and no checks received.
/// - `Checking`: checks are in progress; no pair is nominated yet.
/// - `Connected`: a pair is nominated and has consent.
/// - `Completed`: as `Connected`, and the remote signalled end-of-candidates and no
///   checks are pending.
/// - `Disconnected`: consent for the nominated pair expired (30 s without a response,
///   or for an ICE-lite agent 30 s without a check). It recovers to `Connected` if consent
///   returns.
/// - `Failed`: the remote signalled end-of-candidates and every pair failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceConnectionState {
    /// Nothing happened yet.
    New,
    /// Connectivity checks in progress.
    Checking,
    /// A nominated pair with consent.
    Connected,
    /// Connected and checking finished.
    Completed,
    /// Consent lost.
    Disconnected,
    /// All pairs failed.
    Failed,
}

/// Something the agent reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceAgentEvent {
    /// The connection state changed.
    IceConnectionStateChange(IceConnectionState),
    /// Media must now be sent from `source` to `destination` over `proto`.
    NominatedSend {
        /// Transport.
        proto: Protocol,
        /// Local address to send from.
        source: SocketAddr,
        /// Remote address to send to.
        destination: SocketAddr,
    },
    /// Traffic from this remote address is now acceptable.
    DiscoveredRecv {
        /// Transport.
        proto: Protocol,
        /// Remote address.
        source: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug)]
struct Check {
    tid: TransactionId,
    sends: u32,
    rto: Duration,
    next_at: Instant,
    use_candidate: bool,
    as_controlling: bool,
    consent: bool,
    contents: Vec<u8>,
}

#[derive(Debug)]
struct Pair {
    local: usize,
    remote: usize,
    prio: u64,
    state: PairState,
    check: Option<Check>,
    /// Controlling: a USE-CANDIDATE check is queued or in flight.
    nominating: bool,
    /// Controlled: USE-CANDIDATE arrived before our own check succeeded.
    nominate_on_success: bool,
    nominated: bool,
    /// The pair is valid and has consent until this instant.
    consent_until: Option<Instant>,
    next_consent: Option<Instant>,
}

/// A Sans-I/O ICE agent for one component.
///
/// A full agent forms candidate pairs, paces checks every Ta = 50 ms, retransmits with
/// exponential back-off (250 ms doubling to 3 s, 9 transmissions), resolves role
/// conflicts (487 + tie-breaker), learns peer-reflexive candidates on both sides and
/// uses regular nomination when controlling. Once a pair is nominated it runs consent
/// freshness checks. An ICE-lite agent never sends checks: it answers them and takes
/// the pair the peer nominates.
#[derive(Debug)]
pub struct IceAgent {
    lite: bool,
    controlling: bool,
    tie_breaker: u64,
    local_creds: IceCreds,
    remote_creds: Option<IceCreds>,
    locals: Vec<Candidate>,
    remotes: Vec<Candidate>,
    pairs: Vec<Pair>,
    triggered: VecDeque<usize>,
    next_check_at: Option<Instant>,
    first_valid_at: Option<Instant>,
    remote_eoc: bool,
    transmits: VecDeque<StunTransmit>,
    /// Spent transmit buffers for reuse.
    buffers: Vec<Vec<u8>>,
    events: VecDeque<IceAgentEvent>,
    state: IceConnectionState,
    selected: Option<(Protocol, SocketAddr, SocketAddr)>,
    discovered: Vec<(Protocol, SocketAddr)>,
    last_now: Option<Instant>,
    /// After an ICE restart: the previously selected remote, valid until the instant.
    legacy: Option<(SocketAddr, Instant)>,
    /// The pre-restart pair expired before a new one was nominated.
    legacy_lost: bool,
}

impl Default for IceAgent {
    fn default() -> Self {
        Self::new()
    }
}

fn opposite_tcp(t: Option<TcpType>) -> Option<TcpType> {
    t.map(|t| match t {
        TcpType::Active => TcpType::Passive,
        TcpType::Passive => TcpType::Active,
        TcpType::So => TcpType::So,
    })
}

fn min_instant(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl IceAgent {
    /// A full, controlled agent with random credentials and tie-breaker.
    pub fn new() -> IceAgent {
        IceAgent::with_credentials(IceCreds::random())
    }

    /// A full, controlled agent with the given local credentials.
    pub fn with_credentials(local_creds: IceCreds) -> IceAgent {
        IceAgent {
            lite: false,
            controlling: false,
            tie_breaker: rand::random(),
            local_creds,
            remote_creds: None,
            locals: Vec::new(),
            remotes: Vec::new(),
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            next_check_at: None,
            first_valid_at: None,
            remote_eoc: false,
            transmits: VecDeque::new(),
            buffers: Vec::new(),
            events: VecDeque::new(),
            state: IceConnectionState::New,
            selected: None,
            discovered: Vec::new(),
            last_now: None,
            legacy: None,
            legacy_lost: false,
        }
    }

    /// Makes this an ICE-lite agent (always controlled, never sends checks).
    pub fn set_ice_lite(&mut self, lite: bool) {
        self.lite = lite;
        if lite {
            self.switch_role(false);
        }
    }

    /// Whether this is an ICE-lite agent.
    pub fn ice_lite(&self) -> bool {
        self.lite
    }

    /// Sets the role. Ignored (stays controlled) for an ICE-lite agent.
    pub fn set_controlling(&mut self, controlling: bool) {
        if !self.lite {
            self.switch_role(controlling);
        }
    }

    /// Whether this agent is currently controlling.
    pub fn controlling(&self) -> bool {
        self.controlling
    }

    /// Local credentials.
    pub fn local_credentials(&self) -> &IceCreds {
        &self.local_creds
    }

    /// Replaces the local credentials (use [`ice_restart`](Self::ice_restart) mid-session).
    pub fn set_local_credentials(&mut self, creds: IceCreds) {
        self.local_creds = creds;
    }

    /// Sets the remote credentials from the remote description.
    pub fn set_remote_credentials(&mut self, creds: IceCreds) {
        self.remote_creds = Some(creds);
    }

    /// Remote credentials, if known.
    pub fn remote_credentials(&self) -> Option<&IceCreds> {
        self.remote_creds.as_ref()
    }

    /// Local candidates, including peer-reflexive ones learned from checks.
    pub fn local_candidates(&self) -> &[Candidate] {
        &self.locals
    }

    /// Remote candidates, including peer-reflexive ones learned from checks.
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remotes
    }

    /// Current connection state.
    pub fn state(&self) -> IceConnectionState {
        self.state
    }

    /// Adds a local candidate and pairs it with the remote candidates. Returns false if
    /// it is a duplicate, peer-reflexive, or not a host candidate on an ICE-lite agent.
    pub fn add_local_candidate(&mut self, c: Candidate) -> bool {
        if c.kind() == CandidateKind::PeerReflexive
            || (self.lite && c.kind() != CandidateKind::Host)
            || self
                .locals
                .iter()
                .any(|l| l.addr() == c.addr() && l.proto() == c.proto() && l.base() == c.base())
        {
            return false;
        }
        self.locals.push(c);
        let li = self.locals.len() - 1;
        for ri in 0..self.remotes.len() {
            self.form_pair(li, ri);
        }
        true
    }

    /// Adds a remote candidate from signalling. Candidates of other components, of a
    /// stale ufrag, or beyond the limit of 50 are ignored. A known address upgrades
    /// a peer-reflexive candidate learned earlier.
    pub fn add_remote_candidate(&mut self, c: Candidate) {
        if c.component() != 1 {
            return;
        }
        if let (Some(u), Some(rc)) = (c.ufrag(), &self.remote_creds)
            && u != rc.ufrag
        {
            return;
        }
        if let Some(i) = self
            .remotes
            .iter()
            .position(|r| r.addr() == c.addr() && r.proto() == c.proto())
        {
            if self.remotes[i].kind() == CandidateKind::PeerReflexive {
                self.remotes[i] = c;
                self.recompute_priorities();
            }
            return;
        }
        if self.remotes.len() >= MAX_REMOTE {
            return;
        }
        self.remotes.push(c);
        let ri = self.remotes.len() - 1;
        for li in 0..self.locals.len() {
            self.form_pair(li, ri);
        }
    }

    /// The remote signalled that it has no more candidates.
    pub fn set_remote_end_of_candidates(&mut self) {
        self.remote_eoc = true;
    }

    /// Restarts ICE with new local credentials: all pairs and remote candidates are
    /// dropped and new remote credentials are expected. Media may continue on the
    /// previously selected pair until a new one is nominated (at most 30 s).
    pub fn ice_restart(&mut self, local_creds: IceCreds) {
        if let Some((_, _, remote)) = self.selected {
            let until = self
                .selected_pair()
                .and_then(|i| self.pairs[i].consent_until)
                .or(self.last_now.map(|n| n + CONSENT_TIMEOUT));
            self.legacy = until.map(|u| (remote, u));
        }
        self.selected = None;
        self.local_creds = local_creds;
        self.remote_creds = None;
        self.remotes.clear();
        self.pairs.clear();
        self.triggered.clear();
        self.locals
            .retain(|c| c.kind() != CandidateKind::PeerReflexive);
        self.next_check_at = None;
        self.first_valid_at = None;
        self.remote_eoc = false;
    }

    /// Whether `msg` is for this agent: a request whose USERNAME starts with our ufrag,
    /// or a response to one of our outstanding transactions.
    pub fn accepts_message(&self, msg: &StunMessage<'_>) -> bool {
        if msg.method() != Method::Binding {
            return false;
        }
        match msg.class() {
            Class::Request => msg
                .username()
                .and_then(|u| u.split_once(':'))
                .is_some_and(|(ours, _)| ours == self.local_creds.ufrag),
            Class::Success | Class::Error => self.pairs.iter().any(|p| {
                p.check
                    .as_ref()
                    .is_some_and(|c| &c.tid == msg.transaction_id())
            }),
            Class::Indication => false,
        }
    }

    /// Whether media may be exchanged with `addr`: a valid pair to it has consent (as of
    /// the last time given to the agent).
    pub fn is_valid_remote(&self, addr: SocketAddr) -> bool {
        let Some(now) = self.last_now else {
            return false;
        };
        self.pairs.iter().any(|p| {
            self.remotes[p.remote].addr() == addr && p.consent_until.is_some_and(|t| t > now)
        }) || self.legacy.is_some_and(|(a, t)| a == addr && t > now)
    }

    /// Next STUN datagram to send.
    pub fn poll_transmit(&mut self) -> Option<StunTransmit> {
        self.transmits.pop_front()
    }

    /// Gives a transmit's buffer back for reuse, so steady-state checks (consent,
    /// answers to the peer's checks) do not allocate.
    pub fn recycle_buffer(&mut self, mut buf: Vec<u8>) {
        if self.buffers.len() < 8 {
            buf.clear();
            self.buffers.push(buf);
        }
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        let mut b = self.buffers.pop().unwrap_or_default();
        b.resize(STUN_BUF, 0);
        b
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<IceAgentEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let now = self.last_now;
        let future = |x: Instant| now.is_none_or(|n| x > n);
        for p in &self.pairs {
            if let Some(c) = &p.check {
                t = min_instant(t, c.next_at);
            }
            if let Some(c) = p.next_consent {
                t = min_instant(t, c);
            }
            if let Some(c) = p.consent_until
                && future(c)
            {
                t = min_instant(t, c);
            }
        }
        if !self.lite && self.remote_creds.is_some() && self.has_check_work() {
            match (self.next_check_at, now) {
                (Some(n), _) => t = min_instant(t, n),
                (None, Some(n)) => t = min_instant(t, n),
                (None, None) => {}
            }
        }
        if self.controlling
            && !self.pairs.iter().any(|p| p.nominated || p.nominating)
            && let Some(f) = self.first_valid_at
            && future(f + NOMINATION_DELAY)
        {
            t = min_instant(t, f + NOMINATION_DELAY);
        }
        if let Some((_, u)) = self.legacy
            && future(u)
        {
            t = min_instant(t, u);
        }
        t
    }

    /// Advances timers: retransmissions, paced checks, nomination, consent.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = Some(now);
        for i in 0..self.pairs.len() {
            let p = &mut self.pairs[i];
            let Some(c) = &mut p.check else { continue };
            if now < c.next_at {
                continue;
            }
            if c.consent {
                p.check = None;
                continue;
            }
            if c.sends >= MAX_SENDS {
                p.check = None;
                p.state = PairState::Failed;
                p.nominating = false;
                continue;
            }
            c.sends += 1;
            c.rto = (c.rto * 2).min(RTO_MAX);
            c.next_at = now + c.rto;
            let contents = c.contents.clone();
            let (proto, source, destination) = self.pair_addrs(i);
            self.transmits.push_back(StunTransmit {
                proto,
                source,
                destination,
                contents,
            });
        }
        if !self.lite && self.remote_creds.is_some() {
            if self.controlling {
                self.maybe_nominate(now);
            }
            if self.next_check_at.is_none_or(|t| now >= t) {
                if let Some(i) = self.next_pair_to_check() {
                    let uc = self.controlling && self.pairs[i].nominating;
                    self.send_check(now, i, uc, false);
                    self.next_check_at = Some(now + TA);
                } else {
                    self.next_check_at = None;
                }
            }
            if let Some(i) = self.selected_pair()
                && self.pairs[i].next_consent.is_some_and(|t| now >= t)
            {
                self.send_check(now, i, false, true);
                self.pairs[i].next_consent = Some(now + consent_interval());
            }
        }
        if self.legacy.is_some_and(|(_, u)| now >= u) {
            self.legacy = None;
            self.legacy_lost = true;
        }
        self.update_selected(now);
        self.update_state(now);
    }

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
        if msg.method() != Method::Binding {
            return;
        }
        match msg.class() {
            Class::Request => self.handle_request(now, proto, source, destination, msg),
            Class::Success | Class::Error => {
                self.handle_response(now, proto, source, destination, msg);
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

    fn handle_request(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        msg: &StunMessage<'_>,
    ) {
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

    fn handle_response(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        msg: &StunMessage<'_>,
    ) {
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
        let Some(check) = self.pairs[pi].check.take() else {
            return;
        };
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

    fn pair_addrs(&self, i: usize) -> (Protocol, SocketAddr, SocketAddr) {
        let p = &self.pairs[i];
        let l = &self.locals[p.local];
        (l.proto(), l.addr(), self.remotes[p.remote].addr())
    }

    fn pair_priority(&self, li: usize, ri: usize) -> u64 {
        let l = u64::from(self.locals[li].priority());
        let r = u64::from(self.remotes[ri].priority());
        let (g, d) = if self.controlling { (l, r) } else { (r, l) };
        (1u64 << 32) * g.min(d) + 2 * g.max(d) + u64::from(g > d)
    }

    fn recompute_priorities(&mut self) {
        for i in 0..self.pairs.len() {
            self.pairs[i].prio = self.pair_priority(self.pairs[i].local, self.pairs[i].remote);
        }
    }

    fn switch_role(&mut self, controlling: bool) {
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
    fn form_pair(&mut self, li: usize, ri: usize) {
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

    fn find_or_create_pair(&mut self, li: usize, ri: usize) -> Option<usize> {
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

    fn can_initiate(&self, i: usize) -> bool {
        self.locals[self.pairs[i].local].tcp_type() != Some(TcpType::Passive)
    }

    fn has_check_work(&self) -> bool {
        self.triggered.iter().any(|&i| {
            self.pairs
                .get(i)
                .is_some_and(|p| p.state == PairState::Waiting)
        }) || (0..self.pairs.len())
            .any(|i| self.pairs[i].state == PairState::Waiting && self.can_initiate(i))
    }

    fn next_pair_to_check(&mut self) -> Option<usize> {
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

    fn maybe_nominate(&mut self, now: Instant) {
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

    fn build_request(&mut self, i: usize, use_candidate: bool) -> Option<(TransactionId, Vec<u8>)> {
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

    fn send_check(&mut self, now: Instant, i: usize, use_candidate: bool, consent: bool) {
        let Some((tid, contents)) = self.build_request(i, use_candidate) else {
            // Credentials too long to encode: this pair can never be checked.
            if !consent {
                self.pairs[i].state = PairState::Failed;
            }
            return;
        };
        let (proto, source, destination) = self.pair_addrs(i);
        self.transmits.push_back(StunTransmit {
            proto,
            source,
            destination,
            contents: contents.clone(),
        });
        let controlling = self.controlling;
        let p = &mut self.pairs[i];
        p.check = Some(Check {
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
    }

    /// Answers the Binding request `msg` (which arrived from `destination` at `source`)
    /// with a success carrying `destination` as XOR-MAPPED-ADDRESS, or with a 487 Role
    /// Conflict error; both end in MESSAGE-INTEGRITY (local password) and FINGERPRINT.
    /// Nothing is sent if the response does not encode.
    fn send_response(
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

    fn discover(&mut self, proto: Protocol, source: SocketAddr) {
        if !self.discovered.contains(&(proto, source)) {
            self.discovered.push((proto, source));
            self.events
                .push_back(IceAgentEvent::DiscoveredRecv { proto, source });
        }
    }

    fn selected_pair(&self) -> Option<usize> {
        let (proto, source, destination) = self.selected?;
        (0..self.pairs.len())
            .filter(|&i| {
                self.pairs[i].nominated && self.pair_addrs(i) == (proto, source, destination)
            })
            .max_by_key(|&i| self.pairs[i].prio)
    }

    fn update_selected(&mut self, now: Instant) {
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

    fn update_state(&mut self, now: Instant) {
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

fn consent_interval() -> Duration {
    Duration::from_millis(rand::rng().random_range(CONSENT_MIN_MS..=CONSENT_MAX_MS))
}

#[cfg(test)]
mod tests;
