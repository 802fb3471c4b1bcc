//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
//! Two agents wired in memory with a virtual clock.

use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashMap;

struct Flight {
    at: Instant,
    to: usize,
    proto: Protocol,
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

struct Net {
    now: Instant,
    agents: [IceAgent; 2],
    /// Public address -> agent.
    owners: HashMap<SocketAddr, usize>,
    /// (inner, outer, agent): a NAT mapping for that agent.
    nat: Vec<(SocketAddr, SocketAddr, usize)>,
    flights: Vec<Flight>,
    loss: f64,
    rng: StdRng,
    events: [Vec<IceAgentEvent>; 2],
    requests_sent: [usize; 2],
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Net {
    fn new(a: IceAgent, b: IceAgent) -> Net {
        let mut owners = HashMap::new();
        for (i, ag) in [&a, &b].into_iter().enumerate() {
            for c in ag.local_candidates() {
                owners.insert(c.addr(), i);
            }
        }
        Net {
            // The epoch of the virtual clock; time only advances by simulation below.
            now: Instant::now(),
            agents: [a, b],
            owners,
            nat: Vec::new(),
            flights: Vec::new(),
            loss: 0.0,
            rng: StdRng::seed_from_u64(7),
            events: [Vec::new(), Vec::new()],
            requests_sent: [0, 0],
        }
    }

    /// Gives each agent the other's credentials and (optionally) candidates.
    fn exchange(&mut self, a_to_b: bool, b_to_a: bool) {
        let (ca, cb) = (
            self.agents[0].local_credentials().clone(),
            self.agents[1].local_credentials().clone(),
        );
        let (la, lb) = (
            self.agents[0].local_candidates().to_vec(),
            self.agents[1].local_candidates().to_vec(),
        );
        self.agents[0].set_remote_credentials(cb);
        self.agents[1].set_remote_credentials(ca);
        if b_to_a {
            for c in lb {
                self.agents[0].add_remote_candidate(c);
            }
        }
        if a_to_b {
            for c in la {
                self.agents[1].add_remote_candidate(c);
            }
        }
        let now = self.now;
        for a in &mut self.agents {
            a.handle_timeout(now);
        }
    }

    fn step(&mut self) -> bool {
        for i in 0..2 {
            while let Some(t) = self.agents[i].poll_transmit() {
                if StunMessage::parse(&t.contents).unwrap().class() == Class::Request {
                    self.requests_sent[i] += 1;
                }
                let mut source = t.source;
                if let Some(&(_, out, _)) = self.nat.iter().find(|n| n.0 == source && n.2 == i) {
                    source = out;
                }
                let (to, destination) = if let Some(&(inner, _, who)) =
                    self.nat.iter().find(|n| n.1 == t.destination)
                {
                    (who, inner)
                } else if let Some(&who) = self.owners.get(&t.destination) {
                    (who, t.destination)
                } else {
                    continue;
                };
                if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                    continue;
                }
                self.flights.push(Flight {
                    at: self.now + Duration::from_millis(10),
                    to,
                    proto: t.proto,
                    source,
                    destination,
                    contents: t.contents,
                });
            }
            while let Some(e) = self.agents[i].poll_event() {
                self.events[i].push(e);
            }
        }
        let mut next = self.flights.iter().map(|f| f.at).min();
        for a in &self.agents {
            if let Some(t) = a.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.flights.drain(..).partition(|f| f.at <= now);
        self.flights = rest;
        for f in due {
            let msg = StunMessage::parse(&f.contents).unwrap();
            let a = &mut self.agents[f.to];
            if a.accepts_message(&msg) {
                a.handle_packet(now, f.proto, f.source, f.destination, &msg);
            }
        }
        for a in &mut self.agents {
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
            }
        }
        for i in 0..2 {
            while let Some(e) = self.agents[i].poll_event() {
                self.events[i].push(e);
            }
        }
        true
    }

    fn run_until(&mut self, limit: Duration, cond: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            if cond(self) {
                return true;
            }
            if self.now >= end || !self.step() {
                return cond(self);
            }
        }
        panic!("simulation did not advance (busy loop)");
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        let _ = self.run_until(d, |n| n.now >= end);
    }

    fn connected(&self) -> bool {
        self.agents.iter().all(|a| {
            matches!(
                a.state(),
                IceConnectionState::Connected | IceConnectionState::Completed
            )
        })
    }

    fn nominated(&self, i: usize) -> Vec<(Protocol, SocketAddr, SocketAddr)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                IceAgentEvent::NominatedSend {
                    proto,
                    source,
                    destination,
                } => Some((*proto, *source, *destination)),
                _ => None,
            })
            .collect()
    }
}

fn agent(controlling: bool, addrs: &[&str]) -> IceAgent {
    let mut a = IceAgent::new();
    a.set_controlling(controlling);
    for s in addrs {
        assert!(a.add_local_candidate(Candidate::host(sa(s), Protocol::Udp).unwrap()));
    }
    a
}

const A: &str = "192.0.2.1:1000";
const B: &str = "192.0.2.2:2000";

#[test]
fn controlling_and_controlled_connect() {
    let mut net = Net::new(agent(true, &[A]), agent(false, &[B]));
    assert!(!net.agents[0].add_local_candidate(Candidate::host(sa(A), Protocol::Udp).unwrap()));
    net.exchange(true, true);
    net.agents[0].set_remote_end_of_candidates();
    net.agents[1].set_remote_end_of_candidates();
    assert_eq!(net.agents[0].state(), IceConnectionState::Checking);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    assert_eq!(net.nominated(0), vec![(Protocol::Udp, sa(A), sa(B))]);
    assert_eq!(net.nominated(1), vec![(Protocol::Udp, sa(B), sa(A))]);
    assert!(net.agents[0].is_valid_remote(sa(B)));
    assert!(net.agents[1].is_valid_remote(sa(A)));
    assert!(!net.agents[0].is_valid_remote(sa("192.0.2.9:1")));
    assert!(net.agents[0].controlling() && !net.agents[1].controlling());
    assert!(net.events[1].contains(&IceAgentEvent::DiscoveredRecv {
        proto: Protocol::Udp,
        source: sa(A)
    }));
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.agents[0].state(), IceConnectionState::Completed);
    assert_eq!(net.agents[1].state(), IceConnectionState::Completed);
    // Consent keeps the session alive well past 30 s.
    net.run_for(Duration::from_secs(60));
    assert!(net.connected());
    assert_eq!(net.nominated(0).len(), 1);
}

#[test]
fn lite_server_full_client() {
    let mut server = IceAgent::new();
    server.set_ice_lite(true);
    server.set_controlling(true);
    assert!(!server.controlling());
    assert!(server.add_local_candidate(Candidate::host(sa(B), Protocol::Udp).unwrap()));
    let srflx = Candidate::server_reflexive(sa("198.51.100.2:2000"), sa(B), Protocol::Udp).unwrap();
    assert!(!server.add_local_candidate(srflx));
    let mut net = Net::new(agent(true, &[A]), server);
    // The lite server learns the client only from its checks.
    net.exchange(false, true);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    assert_eq!(net.requests_sent[1], 0, "lite agent never sends checks");
    assert_eq!(net.nominated(1), vec![(Protocol::Udp, sa(B), sa(A))]);
    assert_eq!(
        net.agents[1].remote_candidates()[0].kind(),
        CandidateKind::PeerReflexive
    );
    assert!(net.agents[1].is_valid_remote(sa(A)));
    net.run_for(Duration::from_secs(60));
    assert!(net.connected());
    // Silence: the lite agent gets no checks for 30 s.
    net.loss = 1.0;
    net.run_for(Duration::from_secs(35));
    assert_eq!(net.agents[1].state(), IceConnectionState::Disconnected);
    assert!(!net.agents[1].is_valid_remote(sa(A)));
}

#[test]
fn ipv6_pairs_only_with_ipv6() {
    let a6 = "[2001:db8::1]:1000";
    let b6 = "[2001:db8::2]:2000";
    let mut net = Net::new(agent(true, &[A, a6]), agent(false, &[b6]));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    assert_eq!(net.nominated(0), vec![(Protocol::Udp, sa(a6), sa(b6))]);
    assert_eq!(net.agents[0].pairs.len(), 1);
}

#[test]
fn role_conflict_resolves() {
    let mut net = Net::new(agent(true, &[A]), agent(true, &[B]));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected()));
    assert_ne!(net.agents[0].controlling(), net.agents[1].controlling());
    assert_eq!(net.nominated(0), vec![(Protocol::Udp, sa(A), sa(B))]);
    assert_eq!(net.nominated(1), vec![(Protocol::Udp, sa(B), sa(A))]);
    // Also both controlled.
    let mut net = Net::new(agent(false, &[A]), agent(false, &[B]));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected()));
    assert_ne!(net.agents[0].controlling(), net.agents[1].controlling());
}

#[test]
fn peer_reflexive_both_sides() {
    let inner = "10.0.0.1:1000";
    let outer = "203.0.113.1:5000";
    let mut net = Net::new(agent(true, &[inner]), agent(false, &[B]));
    net.owners.remove(&sa(inner)); // private address: unreachable directly
    net.nat.push((sa(inner), sa(outer), 0));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected()));
    let prflx_remote = net.agents[1]
        .remote_candidates()
        .iter()
        .find(|c| c.kind() == CandidateKind::PeerReflexive)
        .unwrap();
    assert_eq!(prflx_remote.addr(), sa(outer));
    let prflx_local = net.agents[0]
        .local_candidates()
        .iter()
        .find(|c| c.kind() == CandidateKind::PeerReflexive)
        .unwrap();
    assert_eq!(prflx_local.addr(), sa(outer));
    assert_eq!(prflx_local.base(), sa(inner));
    assert_eq!(net.nominated(0), vec![(Protocol::Udp, sa(inner), sa(B))]);
    assert_eq!(net.nominated(1), vec![(Protocol::Udp, sa(B), sa(outer))]);
    assert!(net.agents[1].is_valid_remote(sa(outer)));
    assert!(!net.agents[1].is_valid_remote(sa(inner)));
}

#[test]
fn survives_twenty_percent_loss() {
    for seed in 0..5 {
        let mut net = Net::new(agent(true, &[A]), agent(false, &[B]));
        net.rng = StdRng::seed_from_u64(seed);
        net.loss = 0.2;
        net.exchange(true, true);
        assert!(
            net.run_until(Duration::from_secs(30), |n| n.connected()),
            "seed {seed}"
        );
        net.run_for(Duration::from_secs(120));
        assert!(net.connected(), "seed {seed}: consent kept under loss");
    }
}

#[test]
fn consent_expires_and_recovers() {
    let mut net = Net::new(agent(true, &[A]), agent(false, &[B]));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    net.loss = 1.0;
    net.run_for(Duration::from_secs(25));
    assert!(net.connected(), "still within 30 s");
    net.run_for(Duration::from_secs(10));
    for a in &net.agents {
        assert_eq!(a.state(), IceConnectionState::Disconnected);
    }
    assert!(!net.agents[0].is_valid_remote(sa(B)));
    assert!(!net.agents[1].is_valid_remote(sa(A)));
    assert!(
        net.events[0].contains(&IceAgentEvent::IceConnectionStateChange(
            IceConnectionState::Disconnected
        ))
    );
    net.loss = 0.0;
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected()));
    assert!(net.agents[0].is_valid_remote(sa(B)));
}

#[test]
fn ice_restart_renominates() {
    let mut net = Net::new(agent(true, &[A]), agent(false, &[B]));
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    let old = net.agents[1].local_credentials().clone();
    net.agents[0].ice_restart(IceCreds::random());
    net.agents[1].ice_restart(IceCreds::random());
    assert!(
        net.agents[0].is_valid_remote(sa(B)),
        "old pair usable meanwhile"
    );
    assert!(net.agents[0].remote_credentials().is_none());
    net.exchange(true, true);
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nominated(0).len() == 2 && n.nominated(1).len() == 2 && n.connected()
    }));
    assert_eq!(net.nominated(0)[1], (Protocol::Udp, sa(A), sa(B)));
    // A request under the old credentials is no longer for B.
    let mut buf = [0u8; 200];
    let mut w = StunWriter::new(&mut buf, Class::Request, Method::Binding, &[1; 12]).unwrap();
    w.username(&format!("{}:x", old.ufrag)).unwrap();
    w.message_integrity(old.pass.as_bytes()).unwrap();
    let n = w.finish();
    assert!(!net.agents[1].accepts_message(&StunMessage::parse(&buf[..n]).unwrap()));
    net.run_for(Duration::from_secs(40));
    assert!(net.connected());
}

#[test]
fn unauthenticated_requests_dropped() {
    let mut b = agent(false, &[B]);
    let creds = b.local_credentials().clone();
    b.set_remote_credentials(IceCreds {
        ufrag: "remo".into(),
        pass: "remotepasswordremotepassword".into(),
    });
    let now = Instant::now();
    let mut buf = [0u8; 200];
    for (user, key, ok) in [
        (format!("{}:remo", creds.ufrag), b"wrong".as_slice(), false),
        (
            format!("{}:other", creds.ufrag),
            creds.pass.as_bytes(),
            false,
        ),
        (format!("{}:remo", creds.ufrag), creds.pass.as_bytes(), true),
    ] {
        let mut w = StunWriter::new(&mut buf, Class::Request, Method::Binding, &[2; 12]).unwrap();
        w.username(&user).unwrap();
        w.priority(1).unwrap();
        w.ice_controlling(5).unwrap();
        w.message_integrity(key).unwrap();
        w.fingerprint().unwrap();
        let n = w.finish();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert!(b.accepts_message(&msg));
        b.handle_packet(now, Protocol::Udp, sa(A), sa(B), &msg);
        let t = b.poll_transmit();
        assert_eq!(t.is_some(), ok, "{user}");
        if let Some(t) = t {
            let resp = StunMessage::parse(&t.contents).unwrap();
            assert_eq!(resp.class(), Class::Success);
            assert_eq!(resp.xor_mapped_address(), Some(sa(A)));
            assert!(resp.check_integrity(creds.pass.as_bytes()));
            assert!(resp.check_fingerprint());
            assert_eq!((t.source, t.destination), (sa(B), sa(A)));
        }
    }
    // An unknown transaction's response is not ours.
    let mut w = StunWriter::new(&mut buf, Class::Success, Method::Binding, &[3; 12]).unwrap();
    w.xor_mapped_address(sa(B)).unwrap();
    let n = w.finish();
    assert!(!b.accepts_message(&StunMessage::parse(&buf[..n]).unwrap()));
}

#[test]
fn tcp_active_to_passive() {
    let mut a = IceAgent::new();
    a.set_controlling(true);
    let mut ca = Candidate::host(sa("192.0.2.1:9"), Protocol::Tcp).unwrap();
    ca.set_tcp_type(TcpType::Active);
    assert!(a.add_local_candidate(ca));
    let mut b = IceAgent::new();
    assert!(b.add_local_candidate(Candidate::host(sa("192.0.2.2:443"), Protocol::Tcp).unwrap()));
    assert!(b.add_local_candidate(Candidate::host(sa(B), Protocol::Udp).unwrap()));
    let mut net = Net::new(a, b);
    // The active side's port 9 is a placeholder; route its real source.
    net.owners.insert(sa("192.0.2.1:9"), 0);
    net.exchange(true, true);
    assert_eq!(
        net.agents[0].pairs.len(),
        1,
        "tcp active pairs only with passive"
    );
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected()));
    assert_eq!(
        net.nominated(0),
        vec![(Protocol::Tcp, sa("192.0.2.1:9"), sa("192.0.2.2:443"))]
    );
}

#[test]
fn all_pairs_fail() {
    let mut net = Net::new(agent(true, &[A]), agent(false, &[B]));
    net.exchange(true, true);
    net.agents[0].set_remote_end_of_candidates();
    net.loss = 1.0;
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.agents[0].state() == IceConnectionState::Failed
    }));
    assert_eq!(net.requests_sent[0], MAX_SENDS as usize);
}
