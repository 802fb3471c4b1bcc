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
        // Few candidates per agent and thousands of agents: no doubling slack.
        self.locals.reserve_exact(1);
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
        self.remotes.reserve_exact(1);
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

    /// Queues pair `i`'s pending check request for sending: the check keeps its
    /// request for retransmissions, the datagram is a copy in a spent buffer (not a
    /// new allocation).
    fn transmit_check(&mut self, i: usize) {
        let mut contents = self.take_buffer();
        contents.clear();
        if let Some(c) = &self.pairs[i].check {
            contents.extend_from_slice(&c.contents);
        }
        let (proto, source, destination) = self.pair_addrs(i);
        self.transmits.push_back(StunTransmit {
            proto,
            source,
            destination,
            contents,
        });
    }

    fn take_buffer(&mut self) -> Vec<u8> {
        let mut b = self.buffers.pop().unwrap_or_else(crate::rtc::pooled_buffer);
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
            if c.consent || c.sends >= MAX_SENDS {
                let consent = c.consent;
                let spent = p.check.take().map(|c| c.contents);
                if !consent {
                    p.state = PairState::Failed;
                    p.nominating = false;
                }
                if let Some(b) = spent {
                    self.recycle_buffer(b);
                }
                continue;
            }
            c.sends += 1;
            c.rto = (c.rto * 2).min(RTO_MAX);
            c.next_at = now + c.rto;
            self.transmit_check(i);
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
}

fn consent_interval() -> Duration {
    Duration::from_millis(rand::rng().random_range(CONSENT_MIN_MS..=CONSENT_MAX_MS))
}

mod pairs;
mod receive;
#[cfg(test)]
mod tests;
