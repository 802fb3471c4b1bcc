//! [`SessionDescription`] -> CRLF-terminated SDP text.
//!
//! Lines are written in RFC 8866 order (`v o s i c b t a*` then per media `m i c b a*`);
//! typed attributes come first in the order browsers use, unknown ones last in their
//! original order.

use std::fmt::{self, Display, Formatter, Write as _};

use super::{
    Attribute, Bandwidth, Connection, Direction, Fingerprint, MediaSection, SessionDescription,
    Setup, Simulcast, SimulcastRid,
};

impl Display for Connection {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl Display for Fingerprint {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.algorithm)?;
        for (i, b) in self.bytes.iter().enumerate() {
            f.write_char(if i == 0 { ' ' } else { ':' })?;
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl Display for Direction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Display for Setup {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn write_bandwidth(f: &mut Formatter<'_>, bw: &[Bandwidth]) -> fmt::Result {
    for b in bw {
        write!(f, "b={}:{}\r\n", b.bwtype, b.bandwidth)?;
    }
    Ok(())
}

fn write_unknown(f: &mut Formatter<'_>, attrs: &[Attribute]) -> fmt::Result {
    for a in attrs {
        match &a.value {
            Some(v) => write!(f, "a={}:{}\r\n", a.name, v)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn write_transport(
    f: &mut Formatter<'_>,
    ufrag: &Option<String>,
    pwd: &Option<String>,
    options: &[String],
    fps: &[Fingerprint],
    setup: Option<Setup>,
) -> fmt::Result {
    if let Some(u) = ufrag {
        write!(f, "a=ice-ufrag:{u}\r\n")?;
    }
    if let Some(p) = pwd {
        write!(f, "a=ice-pwd:{p}\r\n")?;
    }
    if !options.is_empty() {
        write!(f, "a=ice-options:{}\r\n", options.join(" "))?;
    }
    for fp in fps {
        write!(f, "a=fingerprint:{fp}\r\n")?;
    }
    if let Some(s) = setup {
        write!(f, "a=setup:{s}\r\n")?;
    }
    Ok(())
}

/// Calls [`write_transport`] with the transport fields of `$owner`, a
/// [`SessionDescription`] or a [`MediaSection`]: the attributes may stand at either level
/// (RFC 8839 §5.4, RFC 8122 §5, RFC 4145 §4), so both types name them alike.
macro_rules! write_transport_of {
    ($f:expr, $owner:expr) => {
        write_transport(
            $f,
            &$owner.ice_ufrag,
            &$owner.ice_pwd,
            &$owner.ice_options,
            &$owner.fingerprints,
            $owner.setup,
        )
    };
}

fn write_simulcast_list(f: &mut Formatter<'_>, list: &[Vec<SimulcastRid>]) -> fmt::Result {
    for (i, stream) in list.iter().enumerate() {
        if i > 0 {
            f.write_char(';')?;
        }
        for (j, alt) in stream.iter().enumerate() {
            if j > 0 {
                f.write_char(',')?;
            }
            if alt.paused {
                f.write_char('~')?;
            }
            f.write_str(&alt.id)?;
        }
    }
    Ok(())
}

impl Display for Simulcast {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if !self.send.is_empty() {
            f.write_str("send ")?;
            write_simulcast_list(f, &self.send)?;
        }
        if !self.recv.is_empty() {
            if !self.send.is_empty() {
                f.write_char(' ')?;
            }
            f.write_str("recv ")?;
            write_simulcast_list(f, &self.recv)?;
        }
        Ok(())
    }
}

impl Display for MediaSection {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.kind.as_str(), self.port)?;
        if let Some(c) = self.port_count {
            write!(f, "/{c}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt_ in &self.formats {
            write!(f, " {fmt_}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.info {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_bandwidth(f, &self.bandwidth)?;
        if let Some(r) = &self.rtcp {
            write!(f, "a=rtcp:{}", r.port)?;
            if let Some(c) = &r.connection {
                write!(f, " {c}")?;
            }
            f.write_str("\r\n")?;
        }
        write_transport_of!(f, self)?;
        if let Some(mid) = &self.mid {
            write!(f, "a=mid:{mid}\r\n")?;
        }
        if self.extmap_allow_mixed {
            f.write_str("a=extmap-allow-mixed\r\n")?;
        }
        for e in &self.extmaps {
            write!(f, "a=extmap:{}", e.id)?;
            if let Some(d) = e.direction {
                write!(f, "/{d}")?;
            }
            write!(f, " {}", e.uri)?;
            if let Some(a) = &e.attributes {
                write!(f, " {a}")?;
            }
            f.write_str("\r\n")?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={d}\r\n")?;
        }
        for m in &self.msids {
            write!(f, "a=msid:{}", m.stream_id)?;
            if let Some(t) = &m.track_id {
                write!(f, " {t}")?;
            }
            f.write_str("\r\n")?;
        }
        if self.rtcp_mux {
            f.write_str("a=rtcp-mux\r\n")?;
        }
        if self.rtcp_rsize {
            f.write_str("a=rtcp-rsize\r\n")?;
        }
        for p in &self.payloads {
            write!(f, "a=rtpmap:{} {}/{}", p.pt, p.codec, p.clock_rate)?;
            if let Some(c) = p.channels {
                write!(f, "/{c}")?;
            }
            f.write_str("\r\n")?;
            for fb in &p.rtcp_fb {
                write!(f, "a=rtcp-fb:{} {fb}\r\n", p.pt)?;
            }
            if !p.fmtp.is_empty() {
                write!(f, "a=fmtp:{} {}\r\n", p.pt, p.fmtp)?;
            }
        }
        for g in &self.ssrc_groups {
            write!(f, "a=ssrc-group:{}", g.semantics)?;
            for s in &g.ssrcs {
                write!(f, " {s}")?;
            }
            f.write_str("\r\n")?;
        }
        for s in &self.ssrcs {
            write!(f, "a=ssrc:{} {}", s.ssrc, s.attribute)?;
            if let Some(v) = &s.value {
                write!(f, ":{v}")?;
            }
            f.write_str("\r\n")?;
        }
        for r in &self.rids {
            write!(f, "a=rid:{} {}", r.id, r.direction.as_str())?;
            let mut sep = ' ';
            if !r.payloads.is_empty() {
                write!(f, "{sep}pt=")?;
                for (i, pt) in r.payloads.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{pt}")?;
                }
                sep = ';';
            }
            for (k, v) in &r.restrictions {
                write!(f, "{sep}{k}")?;
                if let Some(v) = v {
                    write!(f, "={v}")?;
                }
                sep = ';';
            }
            f.write_str("\r\n")?;
        }
        if let Some(s) = &self.simulcast {
            write!(f, "a=simulcast:{s}\r\n")?;
        }
        if let Some(p) = self.sctp_port {
            write!(f, "a=sctp-port:{p}\r\n")?;
        }
        if let Some(m) = self.max_message_size {
            write!(f, "a=max-message-size:{m}\r\n")?;
        }
        for c in &self.candidates {
            write!(f, "a={c}\r\n")?;
        }
        if self.end_of_candidates {
            f.write_str("a=end-of-candidates\r\n")?;
        }
        if self.bundle_only {
            f.write_str("a=bundle-only\r\n")?;
        }
        write_unknown(f, &self.unknown)
    }
}

impl Display for SessionDescription {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v={}\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            self.version,
            o.username,
            o.session_id,
            o.session_version,
            o.net_type,
            o.addr_type,
            o.unicast_address,
            self.session_name
        )?;
        if let Some(i) = &self.info {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write_bandwidth(f, &self.bandwidth)?;
        write!(f, "t={} {}\r\n", self.timing.start, self.timing.stop)?;
        for g in &self.groups {
            write!(f, "a=group:{}", g.semantics)?;
            for m in &g.mids {
                write!(f, " {m}")?;
            }
            f.write_str("\r\n")?;
        }
        if self.ice_lite {
            f.write_str("a=ice-lite\r\n")?;
        }
        write_transport_of!(f, self)?;
        if let Some(d) = self.direction {
            write!(f, "a={d}\r\n")?;
        }
        if self.extmap_allow_mixed {
            f.write_str("a=extmap-allow-mixed\r\n")?;
        }
        if let Some(m) = &self.msid_semantic {
            write!(f, "a=msid-semantic:{}", m.semantic)?;
            for id in &m.ids {
                write!(f, " {id}")?;
            }
            f.write_str("\r\n")?;
        }
        write_unknown(f, &self.unknown)?;
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}
