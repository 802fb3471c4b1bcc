//! ICE candidates (RFC 8445 §5, RFC 8839 SDP syntax, RFC 6544 TCP candidates).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::IceError;

/// Transport protocol of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// UDP.
    Udp,
    /// TCP (RFC 6544), datagrams framed per RFC 4571.
    Tcp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        }
    }
}

/// The kind of a candidate (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address on a local interface.
    Host,
    /// An address a STUN server saw (NAT mapping).
    ServerReflexive,
    /// An address learned from connectivity checks.
    PeerReflexive,
    /// An address on a TURN relay.
    Relayed,
}

impl CandidateKind {
    /// Type preference of RFC 8445 §5.1.2.2 (recommended values).
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relayed => 0,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }
}

/// The connection role of a TCP candidate (RFC 6544 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpType {
    /// Opens outgoing connections only.
    Active,
    /// Accepts incoming connections only.
    Passive,
    /// Simultaneous open.
    So,
}

impl TcpType {
    fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::So => "so",
        }
    }
    /// Direction preference of RFC 6544 §4.2 for host/srflx/relay candidates.
    fn direction_preference(self) -> u32 {
        match self {
            TcpType::Active => 6,
            TcpType::Passive => 4,
            TcpType::So => 2,
        }
    }
    /// Whether a local candidate of this type can be paired with a remote of `remote`.
    pub fn pairs_with(self, remote: TcpType) -> bool {
        matches!(
            (self, remote),
            (TcpType::Active, TcpType::Passive)
                | (TcpType::Passive, TcpType::Active)
                | (TcpType::So, TcpType::So)
        )
    }
}

/// An ICE candidate, local or remote.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    foundation: String,
    component: u16,
    proto: Protocol,
    priority: u32,
    addr: SocketAddr,
    base: SocketAddr,
    related: Option<SocketAddr>,
    kind: CandidateKind,
    tcp_type: Option<TcpType>,
    generation: Option<u32>,
    ufrag: Option<String>,
}

/// A 32-bit FNV-1a hash, used to derive stable foundations.
fn fnv1a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn check_addr(addr: SocketAddr) -> Result<(), IceError> {
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(IceError::InvalidAddress);
    }
    Ok(())
}

impl Candidate {
    fn new_local(
        kind: CandidateKind,
        addr: SocketAddr,
        base: SocketAddr,
        related: Option<SocketAddr>,
        proto: Protocol,
    ) -> Result<Candidate, IceError> {
        check_addr(addr)?;
        check_addr(base)?;
        if addr.is_ipv4() != base.is_ipv4() && kind != CandidateKind::Relayed {
            return Err(IceError::InvalidAddress);
        }
        let tcp_type = match proto {
            Protocol::Udp => None,
            Protocol::Tcp => Some(TcpType::Passive),
        };
        let mut c = Candidate {
            foundation: String::new(),
            component: 1,
            proto,
            priority: 0,
            addr,
            base,
            related,
            kind,
            tcp_type,
            generation: None,
            ufrag: None,
        };
        c.recompute();
        Ok(c)
    }

    fn recompute(&mut self) {
        self.priority =
            Self::compute_priority(self.kind, self.proto, self.tcp_type, self.component);
        let kind = [self.kind as u8];
        let proto = [self.proto as u8];
        self.foundation = fnv1a(&[&kind, &ip_bytes(self.base.ip()), &proto]).to_string();
    }

    /// Priority per RFC 8445 §5.1.2.1 (and RFC 6544 §4.2 for TCP local preference).
    pub fn compute_priority(
        kind: CandidateKind,
        proto: Protocol,
        tcp_type: Option<TcpType>,
        component: u16,
    ) -> u32 {
        let local_pref: u32 = match (proto, tcp_type) {
            (Protocol::Udp, _) => 65535,
            (Protocol::Tcp, t) => {
                (t.unwrap_or(TcpType::Passive).direction_preference() << 13) | 8191
            }
        };
        let comp = u32::from(component.clamp(1, 256));
        (kind.type_preference() << 24) + (local_pref << 8) + (256 - comp)
    }

    /// A host candidate on a local interface. TCP host candidates are passive; use
    /// [`set_tcp_type`](Self::set_tcp_type) to change that.
    ///
    /// # Errors
    ///
    /// [`IceError::InvalidAddress`] when `addr` is unspecified or multicast.
    pub fn host(addr: SocketAddr, proto: Protocol) -> Result<Candidate, IceError> {
        Self::new_local(CandidateKind::Host, addr, addr, None, proto)
    }

    /// A server-reflexive candidate `addr` whose base (local socket) is `base`.
    ///
    /// # Errors
    ///
    /// [`IceError::InvalidAddress`] when `addr` or `base` is unspecified or multicast,
    /// or the two are of different address families.
    pub fn server_reflexive(
        addr: SocketAddr,
        base: SocketAddr,
        proto: Protocol,
    ) -> Result<Candidate, IceError> {
        Self::new_local(
            CandidateKind::ServerReflexive,
            addr,
            base,
            Some(base),
            proto,
        )
    }

    /// A relayed candidate on a TURN server; `base` is the local socket used to reach
    /// the relay, if known (advertised as raddr/rport).
    ///
    /// # Errors
    ///
    /// [`IceError::InvalidAddress`] when `addr` or `base` is unspecified or multicast.
    pub fn relayed(
        addr: SocketAddr,
        base: Option<SocketAddr>,
        proto: Protocol,
    ) -> Result<Candidate, IceError> {
        // The relayed address itself is the base (RFC 8445 §5.1.1.2).
        Self::new_local(CandidateKind::Relayed, addr, addr, base, proto)
    }

    /// A peer-reflexive candidate learned during checks.
    pub(crate) fn peer_reflexive(
        addr: SocketAddr,
        base: SocketAddr,
        proto: Protocol,
        priority: u32,
        tcp_type: Option<TcpType>,
    ) -> Candidate {
        let kind = [CandidateKind::PeerReflexive as u8];
        let foundation = fnv1a(&[&kind, &ip_bytes(addr.ip())]).to_string();
        Candidate {
            foundation,
            component: 1,
            proto,
            priority,
            addr,
            base,
            related: None,
            kind: CandidateKind::PeerReflexive,
            tcp_type,
            generation: None,
            ufrag: None,
        }
    }

    /// Sets the TCP candidate type (ignored for UDP) and recomputes the priority.
    pub fn set_tcp_type(&mut self, tcp_type: TcpType) {
        if self.proto == Protocol::Tcp {
            self.tcp_type = Some(tcp_type);
            self.recompute();
        }
    }

    /// Overrides the priority (e.g. to prefer one interface over another).
    pub fn set_priority(&mut self, priority: u32) {
        self.priority = priority;
    }

    /// Sets the ufrag advertised with this candidate.
    pub fn set_ufrag(&mut self, ufrag: Option<String>) {
        self.ufrag = ufrag;
    }

    /// Foundation (RFC 8445 §5.1.1.3).
    pub fn foundation(&self) -> &str {
        &self.foundation
    }
    /// Component id (1 for RTP with rtcp-mux).
    pub fn component(&self) -> u16 {
        self.component
    }
    /// Transport protocol.
    pub fn proto(&self) -> Protocol {
        self.proto
    }
    /// Priority.
    pub fn priority(&self) -> u32 {
        self.priority
    }
    /// Transport address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Base: the local address packets are sent from (for remote candidates, the
    /// related address if given, else the address).
    pub fn base(&self) -> SocketAddr {
        self.base
    }
    /// Related address (raddr/rport), if any.
    pub fn related(&self) -> Option<SocketAddr> {
        self.related
    }
    /// Kind of candidate.
    pub fn kind(&self) -> CandidateKind {
        self.kind
    }
    /// TCP type for TCP candidates.
    pub fn tcp_type(&self) -> Option<TcpType> {
        self.tcp_type
    }
    /// Generation extension value, if any.
    pub fn generation(&self) -> Option<u32> {
        self.generation
    }
    /// ufrag extension value, if any.
    pub fn ufrag(&self) -> Option<&str> {
        self.ufrag.as_deref()
    }

    /// Parses an SDP candidate attribute value, with or without a leading `candidate:`
    /// (and tolerating a leading `a=`).
    ///
    /// Host names are refused: an mDNS `.local` name yields [`IceError::Mdns`], any
    /// other name [`IceError::InvalidAddress`]. Unknown extension pairs are ignored.
    ///
    /// # Errors
    ///
    /// [`IceError::Malformed`] for a missing or malformed field,
    /// [`IceError::UnsupportedTransport`] for a transport other than UDP or TCP,
    /// [`IceError::Mdns`] for an mDNS `.local` address, [`IceError::InvalidAddress`]
    /// for an unusable address.
    pub fn from_sdp_string(s: &str) -> Result<Candidate, IceError> {
        let s = s.trim();
        let s = s.strip_prefix("a=").unwrap_or(s);
        let s = s.strip_prefix("candidate:").unwrap_or(s);
        let mut it = s.split_ascii_whitespace();
        let mut next = |what: &'static str| it.next().ok_or(IceError::Malformed(what));
        let foundation = next("foundation")?;
        if foundation.is_empty() || foundation.len() > 32 || !foundation.bytes().all(is_ice_char) {
            return Err(IceError::Malformed("foundation"));
        }
        let component: u16 = next("component")?
            .parse()
            .map_err(|_| IceError::Malformed("component"))?;
        if !(1..=256).contains(&component) {
            return Err(IceError::Malformed("component"));
        }
        let transport = next("transport")?;
        let proto = if transport.eq_ignore_ascii_case("udp") {
            Protocol::Udp
        } else if transport.eq_ignore_ascii_case("tcp") {
            Protocol::Tcp
        } else {
            return Err(IceError::UnsupportedTransport);
        };
        let priority: u32 = next("priority")?
            .parse()
            .map_err(|_| IceError::Malformed("priority"))?;
        let host = next("address")?;
        let port: u16 = next("port")?
            .parse()
            .map_err(|_| IceError::Malformed("port"))?;
        let ip: IpAddr = match host.parse() {
            Ok(ip) => ip,
            Err(_) if host.to_ascii_lowercase().ends_with(".local") => {
                return Err(IceError::Mdns);
            }
            Err(_) => return Err(IceError::InvalidAddress),
        };
        if next("typ")? != "typ" {
            return Err(IceError::Malformed("typ"));
        }
        let kind = match next("type")? {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::ServerReflexive,
            "prflx" => CandidateKind::PeerReflexive,
            "relay" => CandidateKind::Relayed,
            _ => return Err(IceError::Malformed("type")),
        };
        let mut raddr: Option<IpAddr> = None;
        let mut rport: Option<u16> = None;
        let mut tcp_type = None;
        let mut generation = None;
        let mut ufrag = None;
        while let Some(key) = it.next() {
            let value = it.next().ok_or(IceError::Malformed("extension value"))?;
            match key {
                "raddr" => {
                    raddr = Some(value.parse().map_err(|_| IceError::Malformed("raddr"))?);
                }
                "rport" => {
                    rport = Some(value.parse().map_err(|_| IceError::Malformed("rport"))?);
                }
                "tcptype" => {
                    tcp_type = Some(match value {
                        "active" => TcpType::Active,
                        "passive" => TcpType::Passive,
                        "so" => TcpType::So,
                        _ => return Err(IceError::Malformed("tcptype")),
                    });
                }
                "generation" => {
                    generation = Some(
                        value
                            .parse()
                            .map_err(|_| IceError::Malformed("generation"))?,
                    );
                }
                "ufrag" => {
                    // RFC 8839 §5.4: ufrag = 4*256ice-char. Anything else would not
                    // survive a write and re-parse (e.g. a trailing control character
                    // that `trim` removes), so it is refused rather than half-kept.
                    if value.is_empty() || value.len() > 256 || !value.bytes().all(is_ice_char) {
                        return Err(IceError::Malformed("ufrag"));
                    }
                    ufrag = Some(value.to_string());
                }
                _ => {}
            }
        }
        let related = match (raddr, rport) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            (None, None) => None,
            _ => return Err(IceError::Malformed("raddr/rport")),
        };
        let tcp_type = match proto {
            Protocol::Udp => None,
            // RFC 6544 §4.5: tcptype is mandatory; treat a missing one as passive.
            Protocol::Tcp => Some(tcp_type.unwrap_or(TcpType::Passive)),
        };
        let addr = SocketAddr::new(ip, port);
        Ok(Candidate {
            foundation: foundation.to_string(),
            component,
            proto,
            priority,
            addr,
            base: addr,
            related,
            kind,
            tcp_type,
            generation,
            ufrag,
        })
    }

    /// Writes the SDP attribute value, `candidate:...` (without `a=`).
    pub fn to_sdp_string(&self) -> String {
        let mut s = String::with_capacity(96);
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "candidate:{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.proto.as_str(),
            self.priority,
            self.addr.ip(),
            self.addr.port(),
            self.kind.as_str()
        );
        if let Some(r) = self.related {
            let _ = write!(s, " raddr {} rport {}", r.ip(), r.port());
        }
        if let Some(t) = self.tcp_type {
            let _ = write!(s, " tcptype {}", t.as_str());
        }
        if let Some(g) = self.generation {
            let _ = write!(s, " generation {g}");
        }
        if let Some(u) = &self.ufrag {
            let _ = write!(s, " ufrag {u}");
        }
        s
    }
}

/// `ice-char` of RFC 8839: ALPHA / DIGIT / "+" / "/".
pub(crate) fn is_ice_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `ice_candidate` fuzz target: a ufrag ending in a vertical tab was
    /// kept, written back, and lost its last byte on re-parse (`trim` removes it).
    #[test]
    fn ufrag_that_is_not_ice_chars_is_refused() {
        let line = "candidate:1 1 tcp 7 1::f 9 typ host ufrag \0\x0b";
        assert_eq!(
            Candidate::from_sdp_string(line),
            Err(IceError::Malformed("ufrag"))
        );
        let line = "candidate:1 1 udp 7 ::1 9 typ host ufrag a\u{7f}b";
        assert!(Candidate::from_sdp_string(line).is_err());
        let ok = "candidate:1 1 udp 7 ::1 9 typ host ufrag aB3+/";
        assert_eq!(
            Candidate::from_sdp_string(ok).unwrap().ufrag(),
            Some("aB3+/")
        );
    }

    #[test]
    fn chrome_host_line() {
        let line = "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 ufrag x network-id 1";
        let c = Candidate::from_sdp_string(line).unwrap();
        assert_eq!(c.foundation(), "1467250027");
        assert_eq!(c.component(), 1);
        assert_eq!(c.proto(), Protocol::Udp);
        assert_eq!(c.priority(), 2122260223);
        assert_eq!(c.addr(), "192.168.0.196:46243".parse().unwrap());
        assert_eq!(c.kind(), CandidateKind::Host);
        assert_eq!(c.generation(), Some(0));
        assert_eq!(c.ufrag(), Some("x"));
        assert_eq!(
            c.to_sdp_string(),
            "candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 ufrag x"
        );
        let again = Candidate::from_sdp_string(&c.to_sdp_string()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn tcp_passive_srflx_ipv6_lines() {
        let tcp = "a=candidate:1052214000 1 tcp 1518280447 192.168.0.196 9 typ host tcptype active generation 0";
        let c = Candidate::from_sdp_string(tcp).unwrap();
        assert_eq!(c.proto(), Protocol::Tcp);
        assert_eq!(c.tcp_type(), Some(TcpType::Active));
        assert_eq!(c.addr().port(), 9);
        let tcp = "candidate:2 1 TCP 2105524479 10.0.0.5 443 typ host tcptype passive";
        let c = Candidate::from_sdp_string(tcp).unwrap();
        assert_eq!(c.tcp_type(), Some(TcpType::Passive));
        assert_eq!(
            c.to_sdp_string(),
            "candidate:2 1 tcp 2105524479 10.0.0.5 443 typ host tcptype passive"
        );

        let srflx = "candidate:842163049 1 udp 1677729535 203.0.113.9 61234 typ srflx raddr 192.168.0.196 rport 46243 generation 0 ufrag abcd network-cost 999";
        let c = Candidate::from_sdp_string(srflx).unwrap();
        assert_eq!(c.kind(), CandidateKind::ServerReflexive);
        assert_eq!(c.related(), Some("192.168.0.196:46243".parse().unwrap()));
        assert_eq!(Candidate::from_sdp_string(&c.to_sdp_string()).unwrap(), c);

        // Firefox style IPv6.
        let v6 = "candidate:1 1 UDP 2122187007 2001:db8::1f 53211 typ host";
        let c = Candidate::from_sdp_string(v6).unwrap();
        assert_eq!(c.addr(), "[2001:db8::1f]:53211".parse().unwrap());
        assert_eq!(
            c.to_sdp_string(),
            "candidate:1 1 udp 2122187007 2001:db8::1f 53211 typ host"
        );
        let relay = "candidate:5 1 udp 16777215 198.51.100.1 3478 typ relay raddr 0.0.0.0 rport 0";
        let c = Candidate::from_sdp_string(relay).unwrap();
        assert_eq!(c.kind(), CandidateKind::Relayed);
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            Candidate::from_sdp_string(
                "candidate:1 1 udp 2122260223 6f0e5c1a-3b1c-4f3e-9a0e.local 5000 typ host"
            ),
            Err(IceError::Mdns)
        );
        assert_eq!(
            Candidate::from_sdp_string("candidate:1 1 udp 1 example.com 5000 typ host"),
            Err(IceError::InvalidAddress)
        );
        assert_eq!(
            Candidate::from_sdp_string("candidate:1 1 sctp 1 1.2.3.4 5000 typ host"),
            Err(IceError::UnsupportedTransport)
        );
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp 1 1.2.3.4",
            "candidate:1 0 udp 1 1.2.3.4 5 typ host",
            "candidate:1 1 udp x 1.2.3.4 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 70000 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 type host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ bogus",
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4",
            "candidate:1 1 udp 1 1.2.3.4 5 typ host generation",
            "candidate:f@o 1 udp 1 1.2.3.4 5 typ host",
        ] {
            assert!(Candidate::from_sdp_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn priorities() {
        let h = Candidate::host("10.0.0.1:5000".parse().unwrap(), Protocol::Udp).unwrap();
        assert_eq!(h.priority(), (126 << 24) + (65535 << 8) + 255);
        assert_eq!(h.priority(), 2130706431);
        let s = Candidate::server_reflexive(
            "1.2.3.4:5000".parse().unwrap(),
            "10.0.0.1:5000".parse().unwrap(),
            Protocol::Udp,
        )
        .unwrap();
        assert_eq!(s.priority(), (100 << 24) + (65535 << 8) + 255);
        assert_eq!(s.related(), Some("10.0.0.1:5000".parse().unwrap()));
        assert!(
            s.to_sdp_string()
                .contains("typ srflx raddr 10.0.0.1 rport 5000")
        );
        let r = Candidate::relayed("5.6.7.8:3478".parse().unwrap(), None, Protocol::Udp).unwrap();
        assert_eq!(r.priority(), (65535 << 8) + 255);
        let mut t = Candidate::host("10.0.0.1:9".parse().unwrap(), Protocol::Tcp).unwrap();
        assert_eq!(t.tcp_type(), Some(TcpType::Passive));
        assert_eq!(t.priority(), (126 << 24) + (((4 << 13) | 8191) << 8) + 255);
        t.set_tcp_type(TcpType::Active);
        assert_eq!(t.priority(), (126 << 24) + (((6 << 13) | 8191) << 8) + 255);
        assert!(t.to_sdp_string().ends_with("typ host tcptype active"));
        assert!(Candidate::host("0.0.0.0:1".parse().unwrap(), Protocol::Udp).is_err());
        // Same base, kind and proto share a foundation; different kinds differ.
        let h2 = Candidate::host("10.0.0.1:6000".parse().unwrap(), Protocol::Udp).unwrap();
        assert_eq!(h.foundation(), h2.foundation());
        assert_ne!(h.foundation(), s.foundation());
        assert!(TcpType::Active.pairs_with(TcpType::Passive));
        assert!(!TcpType::Active.pairs_with(TcpType::Active));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn sdp_round_trip(
            foundation in "[a-zA-Z0-9+/]{1,32}",
            component in 1u16..=256,
            tcp in proptest::prelude::any::<bool>(),
            priority in proptest::prelude::any::<u32>(),
            ip in proptest::prelude::any::<std::net::IpAddr>(),
            port in proptest::prelude::any::<u16>(),
            kind in 0usize..4,
            related in proptest::option::of(proptest::prelude::any::<(std::net::IpAddr, u16)>()),
            tcp_type in 0usize..3,
            generation in proptest::option::of(proptest::prelude::any::<u32>()),
            ufrag in proptest::option::of("[a-zA-Z0-9+/]{4,16}"),
        ) {
            let proto = if tcp { Protocol::Tcp } else { Protocol::Udp };
            let c = Candidate {
                foundation,
                component,
                proto,
                priority,
                addr: SocketAddr::new(ip, port),
                base: SocketAddr::new(ip, port),
                related: related.map(|(ip, port)| SocketAddr::new(ip, port)),
                kind: [CandidateKind::Host, CandidateKind::ServerReflexive,
                       CandidateKind::PeerReflexive, CandidateKind::Relayed][kind],
                tcp_type: tcp.then_some([TcpType::Active, TcpType::Passive, TcpType::So][tcp_type]),
                generation,
                ufrag,
            };
            let line = c.to_sdp_string();
            let back = Candidate::from_sdp_string(&line).unwrap();
            proptest::prop_assert_eq!(back, c);
        }
    }
}
