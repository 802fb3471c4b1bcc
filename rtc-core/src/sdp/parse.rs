//! SDP text -> [`SessionDescription`].

use super::{
    Attribute, Bandwidth, Codec, Connection, Direction, ExtMap, Fingerprint, FormatParams, Group,
    MediaSection, Msid, MsidSemantic, Origin, PayloadType, Rid, RidDirection, RtcpAttr, SdpError,
    SdpErrorKind, SectionKind, SessionDescription, Setup, Simulcast, SimulcastRid, SsrcAttribute,
    SsrcGroup, Timing,
};

type K = SdpErrorKind;

/// Parse-time failure of one line, before the line number is attached.
type LineResult<T> = Result<T, SdpErrorKind>;

/// Payload type information collected while reading a media section.
#[derive(Default)]
struct PendingPayloads {
    rtpmaps: Vec<(u8, Codec, u32, Option<u16>)>,
    fmtps: Vec<(u8, String)>,
    fbs: Vec<(u8, String)>,
}

/// Parses SDP text.
pub(crate) fn parse(input: &str) -> Result<SessionDescription, SdpError> {
    let mut sd = SessionDescription::default();
    // 0: expect v=, 1: expect o=, 2: expect s=, 3: free session level.
    let mut stage = 0u8;
    let mut seen_t = false;
    let mut current: Option<(MediaSection, PendingPayloads)> = None;
    let mut last_line = 0usize;

    for (idx, raw) in input.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        if line.is_empty() {
            continue;
        }
        last_line = line_no;
        let err = |k: SdpErrorKind| SdpError::new(line_no, line, k);
        let bytes = line.as_bytes();
        let (typ, value) = match (bytes.first(), bytes.get(1)) {
            // Slicing at 2 cannot panic: bytes 0 and 1 exist and are ASCII, so index 2 is
            // within the string and on a char boundary.
            (Some(t), Some(b'=')) if t.is_ascii_lowercase() => (*t as char, &line[2..]),
            _ => return Err(err(K::NotTypeValue)),
        };
        let expected = match stage {
            0 => Some('v'),
            1 => Some('o'),
            2 => Some('s'),
            _ => None,
        };
        if let Some(expected) = expected {
            if typ != expected {
                return Err(err(K::UnexpectedLine { expected }));
            }
            stage += 1;
        }

        match typ {
            'v' if stage == 1 => {
                sd.version = value.parse().map_err(|_| err(K::BadVersion))?;
                if sd.version != 0 {
                    return Err(err(K::BadVersion));
                }
            }
            'o' if stage == 2 => sd.origin = parse_origin(value).map_err(err)?,
            's' if stage == 3 && expected.is_some() => sd.session_name = value.to_owned(),
            'v' | 'o' | 's' => {
                return Err(err(K::UnexpectedLine {
                    expected: if current.is_some() { 'a' } else { 't' },
                }));
            }
            'm' => {
                if !seen_t {
                    return Err(err(K::MissingLine('t')));
                }
                if let Some((m, p)) = current.take() {
                    sd.media.push(finish_media(m, p));
                }
                current = Some((parse_media_line(value).map_err(err)?, Default::default()));
            }
            'i' => {
                let slot = match current.as_mut() {
                    Some((m, _)) => &mut m.info,
                    None => &mut sd.info,
                };
                *slot = Some(value.to_owned());
            }
            'c' => {
                let c = parse_connection(value).ok_or_else(|| err(K::BadConnection))?;
                match current.as_mut() {
                    Some((m, _)) => m.connection = Some(c),
                    None => sd.connection = Some(c),
                }
            }
            'b' => {
                let b = parse_bandwidth(value).ok_or_else(|| err(K::BadBandwidth))?;
                match current.as_mut() {
                    Some((m, _)) => m.bandwidth.push(b),
                    None => sd.bandwidth.push(b),
                }
            }
            't' if current.is_none() => {
                let t = parse_timing(value).ok_or_else(|| err(K::BadTiming))?;
                if !seen_t {
                    sd.timing = t;
                }
                seen_t = true;
            }
            // Session-level lines WebRTC does not use: accepted and dropped.
            'u' | 'e' | 'p' | 'r' | 'z' | 'k' if current.is_none() => {}
            'k' => {}
            't' | 'u' | 'e' | 'p' | 'r' | 'z' => {
                return Err(err(K::UnexpectedLine { expected: 'a' }));
            }
            'a' => {
                let (name, val) = match value.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (value, None),
                };
                match current.as_mut() {
                    Some((m, p)) => media_attribute(m, p, name, val).map_err(err)?,
                    None => session_attribute(&mut sd, name, val).map_err(err)?,
                }
            }
            other => return Err(err(K::UnknownLineType(other))),
        }
    }

    if stage < 3 {
        if stage == 0 {
            return Err(SdpError::new(1, "", K::Empty));
        }
        let expected = if stage == 1 { 'o' } else { 's' };
        return Err(SdpError::new(
            last_line + 1,
            "",
            K::UnexpectedLine { expected },
        ));
    }
    if !seen_t {
        return Err(SdpError::new(last_line + 1, "", K::MissingLine('t')));
    }
    if let Some((m, p)) = current.take() {
        sd.media.push(finish_media(m, p));
    }
    Ok(sd)
}

fn parse_origin(v: &str) -> LineResult<Origin> {
    let f: Vec<&str> = v.split_whitespace().collect();
    let [username, id, ver, net, addr_type, addr] = f.as_slice() else {
        return Err(K::BadOrigin);
    };
    Ok(Origin {
        username: (*username).to_owned(),
        session_id: id.parse().map_err(|_| K::BadOrigin)?,
        session_version: ver.parse().map_err(|_| K::BadOrigin)?,
        net_type: (*net).to_owned(),
        addr_type: (*addr_type).to_owned(),
        unicast_address: (*addr).to_owned(),
    })
}

fn parse_connection(v: &str) -> Option<Connection> {
    let f: Vec<&str> = v.split_whitespace().collect();
    let [net, addr_type, addr] = f.as_slice() else {
        return None;
    };
    Some(Connection {
        net_type: (*net).to_owned(),
        addr_type: (*addr_type).to_owned(),
        address: (*addr).to_owned(),
    })
}

fn parse_bandwidth(v: &str) -> Option<Bandwidth> {
    let (t, n) = v.split_once(':')?;
    if t.is_empty() || t.contains(char::is_whitespace) {
        return None;
    }
    Some(Bandwidth {
        bwtype: t.to_owned(),
        bandwidth: n.trim().parse().ok()?,
    })
}

fn parse_timing(v: &str) -> Option<Timing> {
    let mut it = v.split_whitespace();
    let start = it.next()?.parse().ok()?;
    let stop = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(Timing { start, stop })
}

fn parse_media_line(v: &str) -> LineResult<MediaSection> {
    let mut it = v.split_whitespace();
    let kind = SectionKind::from_name(it.next().ok_or(K::BadMediaLine)?);
    let port_s = it.next().ok_or(K::BadMediaLine)?;
    let (port, port_count) = match port_s.split_once('/') {
        Some((p, c)) => (p, Some(c.parse().map_err(|_| K::BadMediaLine)?)),
        None => (port_s, None),
    };
    let port = port.parse().map_err(|_| K::BadMediaLine)?;
    let proto = it.next().ok_or(K::BadMediaLine)?;
    let mut m = MediaSection::new(kind, port, proto);
    m.port_count = port_count;
    m.formats = it.map(str::to_owned).collect();
    Ok(m)
}

fn no_ws(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

fn parse_fingerprint(v: &str) -> LineResult<Fingerprint> {
    let bad = K::BadAttribute("fingerprint");
    let (alg, hex) = v.trim().split_once(' ').ok_or(bad.clone())?;
    let hex = hex.trim();
    if alg.is_empty() || hex.is_empty() {
        return Err(bad);
    }
    let mut bytes = Vec::with_capacity(hex.len().div_ceil(3));
    for pair in hex.split(':') {
        if pair.len() != 2 || !pair.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad);
        }
        bytes.push(u8::from_str_radix(pair, 16).map_err(|_| bad.clone())?);
    }
    Ok(Fingerprint {
        algorithm: alg.to_ascii_lowercase(),
        bytes,
    })
}

fn words(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn required<'a>(v: Option<&'a str>, name: &'static str) -> LineResult<&'a str> {
    match v.map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(K::BadAttribute(name)),
    }
}

/// Attributes allowed at both session and media level. Returns false if `name` is not one.
#[allow(clippy::too_many_arguments)]
fn common_attribute(
    name: &str,
    val: Option<&str>,
    ufrag: &mut Option<String>,
    pwd: &mut Option<String>,
    options: &mut Vec<String>,
    fps: &mut Vec<Fingerprint>,
    setup: &mut Option<Setup>,
    mixed: &mut bool,
    direction: &mut Option<Direction>,
) -> LineResult<bool> {
    match name {
        "ice-ufrag" => *ufrag = Some(required(val, "ice-ufrag")?.to_owned()),
        "ice-pwd" => *pwd = Some(required(val, "ice-pwd")?.to_owned()),
        "ice-options" => *options = words(val),
        "fingerprint" => fps.push(parse_fingerprint(required(val, "fingerprint")?)?),
        "setup" => {
            *setup =
                Some(Setup::from_name(required(val, "setup")?).ok_or(K::BadAttribute("setup"))?)
        }
        "extmap-allow-mixed" => *mixed = true,
        _ => match Direction::from_name(name) {
            Some(d) if val.is_none() => *direction = Some(d),
            _ => return Ok(false),
        },
    }
    Ok(true)
}

fn session_attribute(sd: &mut SessionDescription, name: &str, val: Option<&str>) -> LineResult<()> {
    if common_attribute(
        name,
        val,
        &mut sd.ice_ufrag,
        &mut sd.ice_pwd,
        &mut sd.ice_options,
        &mut sd.fingerprints,
        &mut sd.setup,
        &mut sd.extmap_allow_mixed,
        &mut sd.direction,
    )? {
        return Ok(());
    }
    match name {
        "group" => {
            let mut it = required(val, "group")?.split_whitespace();
            let semantics = it.next().ok_or(K::BadAttribute("group"))?.to_owned();
            sd.groups.push(Group {
                semantics,
                mids: it.map(str::to_owned).collect(),
            });
        }
        "ice-lite" => sd.ice_lite = true,
        "msid-semantic" => {
            let mut it = required(val, "msid-semantic")?.split_whitespace();
            let semantic = it
                .next()
                .ok_or(K::BadAttribute("msid-semantic"))?
                .to_owned();
            sd.msid_semantic = Some(MsidSemantic {
                semantic,
                ids: it.map(str::to_owned).collect(),
            });
        }
        _ => sd.unknown.push(Attribute {
            name: name.to_owned(),
            value: val.map(str::to_owned),
        }),
    }
    Ok(())
}

fn parse_pt(s: &str, name: &'static str) -> LineResult<u8> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(K::BadAttribute(name)),
    }
}

fn parse_rtpmap(v: &str) -> LineResult<(u8, Codec, u32, Option<u16>)> {
    let bad = K::BadAttribute("rtpmap");
    let (pt, enc) = v.trim().split_once(' ').ok_or(bad.clone())?;
    let pt = parse_pt(pt, "rtpmap")?;
    let mut it = enc.trim().split('/');
    let name = it.next().filter(|n| no_ws(n)).ok_or(bad.clone())?;
    let clock = it.next().and_then(|c| c.parse().ok()).ok_or(bad.clone())?;
    let channels = match it.next() {
        Some(c) => Some(c.parse().map_err(|_| bad.clone())?),
        None => None,
    };
    if it.next().is_some() {
        return Err(bad);
    }
    Ok((pt, Codec::from_name(name), clock, channels))
}

fn parse_extmap(v: &str) -> LineResult<ExtMap> {
    let bad = K::BadAttribute("extmap");
    let v = v.trim();
    let (idp, rest) = v.split_once(' ').ok_or(bad.clone())?;
    let (id, direction) = match idp.split_once('/') {
        Some((i, d)) => (i, Some(Direction::from_name(d).ok_or(bad.clone())?)),
        None => (idp, None),
    };
    let id = id.parse().map_err(|_| bad.clone())?;
    let rest = rest.trim_start();
    let (uri, attrs) = match rest.split_once([' ', '\t']) {
        Some((u, a)) => (u, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (rest, None),
    };
    if uri.is_empty() {
        return Err(bad);
    }
    Ok(ExtMap {
        id,
        direction,
        uri: uri.to_owned(),
        attributes: attrs.map(str::to_owned),
    })
}

fn parse_rid(v: &str) -> LineResult<Rid> {
    let bad = K::BadAttribute("rid");
    let mut it = v.split_whitespace();
    let id = it.next().ok_or(bad.clone())?.to_owned();
    let direction = match it.next() {
        Some("send") => RidDirection::Send,
        Some("recv") => RidDirection::Recv,
        _ => return Err(bad),
    };
    let mut rid = Rid {
        id,
        direction,
        payloads: Vec::new(),
        restrictions: Vec::new(),
    };
    if let Some(params) = it.next() {
        for part in params.split(';').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("pt", list)) => {
                    for pt in list.split(',') {
                        rid.payloads.push(parse_pt(pt, "rid")?);
                    }
                }
                Some((k, v)) => rid.restrictions.push((k.to_owned(), Some(v.to_owned()))),
                None => rid.restrictions.push((part.to_owned(), None)),
            }
        }
    }
    if it.next().is_some() {
        return Err(bad);
    }
    Ok(rid)
}

fn parse_simulcast_list(list: &str) -> LineResult<Vec<Vec<SimulcastRid>>> {
    let bad = K::BadAttribute("simulcast");
    // Pre-RFC 8853 syntax prefixed the list with "rid=".
    let list = list.strip_prefix("rid=").unwrap_or(list);
    let mut out = Vec::new();
    for stream in list.split(';') {
        let mut alts = Vec::new();
        for alt in stream.split(',') {
            let (paused, id) = match alt.strip_prefix('~') {
                Some(id) => (true, id),
                None => (false, alt),
            };
            if id.is_empty() {
                return Err(bad);
            }
            alts.push(SimulcastRid {
                id: id.to_owned(),
                paused,
            });
        }
        out.push(alts);
    }
    Ok(out)
}

fn parse_simulcast(v: &str) -> LineResult<Simulcast> {
    let bad = K::BadAttribute("simulcast");
    let mut s = Simulcast::default();
    let mut it = v.split_whitespace();
    while let Some(dir) = it.next() {
        let list = parse_simulcast_list(it.next().ok_or(bad.clone())?)?;
        match dir {
            "send" if s.send.is_empty() => s.send = list,
            "recv" if s.recv.is_empty() => s.recv = list,
            _ => return Err(bad),
        }
    }
    if s.send.is_empty() && s.recv.is_empty() {
        return Err(bad);
    }
    Ok(s)
}

fn parse_ssrc(v: &str) -> LineResult<SsrcAttribute> {
    let bad = K::BadAttribute("ssrc");
    let (ssrc, rest) = v.trim().split_once(' ').ok_or(bad.clone())?;
    let ssrc = ssrc.parse().map_err(|_| bad.clone())?;
    let rest = rest.trim();
    let (attribute, value) = match rest.split_once(':') {
        Some((a, v)) => (a, Some(v.to_owned())),
        None => (rest, None),
    };
    if !no_ws(attribute) {
        return Err(bad);
    }
    Ok(SsrcAttribute {
        ssrc,
        attribute: attribute.to_owned(),
        value,
    })
}

fn media_attribute(
    m: &mut MediaSection,
    p: &mut PendingPayloads,
    name: &str,
    val: Option<&str>,
) -> LineResult<()> {
    if common_attribute(
        name,
        val,
        &mut m.ice_ufrag,
        &mut m.ice_pwd,
        &mut m.ice_options,
        &mut m.fingerprints,
        &mut m.setup,
        &mut m.extmap_allow_mixed,
        &mut m.direction,
    )? {
        return Ok(());
    }
    match name {
        "mid" => m.mid = Some(required(val, "mid")?.to_owned()),
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp-rsize" => m.rtcp_rsize = true,
        "rtcp" => {
            let v = required(val, "rtcp")?;
            let (port, conn) = match v.split_once(' ') {
                Some((p, c)) => (p, Some(parse_connection(c).ok_or(K::BadAttribute("rtcp"))?)),
                None => (v, None),
            };
            m.rtcp = Some(RtcpAttr {
                port: port.parse().map_err(|_| K::BadAttribute("rtcp"))?,
                connection: conn,
            });
        }
        "msid" => {
            let mut it = required(val, "msid")?.split_whitespace();
            let stream_id = it.next().ok_or(K::BadAttribute("msid"))?.to_owned();
            let track_id = it.next().map(str::to_owned);
            if it.next().is_some() {
                return Err(K::BadAttribute("msid"));
            }
            m.msids.push(Msid {
                stream_id,
                track_id,
            });
        }
        "extmap" => m.extmaps.push(parse_extmap(required(val, "extmap")?)?),
        "rtpmap" => p.rtpmaps.push(parse_rtpmap(required(val, "rtpmap")?)?),
        "fmtp" | "rtcp-fb" => {
            let key: &'static str = if name == "fmtp" { "fmtp" } else { "rtcp-fb" };
            let v = required(val, key)?;
            let (pt, rest) = v.split_once(' ').unwrap_or((v, ""));
            let rest = rest.trim();
            if pt == "*" && key == "rtcp-fb" {
                // Wildcard feedback is kept verbatim.
                m.unknown.push(Attribute {
                    name: name.to_owned(),
                    value: val.map(str::to_owned),
                });
                return Ok(());
            }
            let pt = parse_pt(pt, key)?;
            if key == "fmtp" {
                p.fmtps.push((pt, rest.to_owned()));
            } else if rest.is_empty() {
                return Err(K::BadAttribute("rtcp-fb"));
            } else {
                p.fbs.push((pt, rest.to_owned()));
            }
        }
        "rid" => m.rids.push(parse_rid(required(val, "rid")?)?),
        "simulcast" => m.simulcast = Some(parse_simulcast(required(val, "simulcast")?)?),
        "ssrc" => m.ssrcs.push(parse_ssrc(required(val, "ssrc")?)?),
        "ssrc-group" => {
            let mut it = required(val, "ssrc-group")?.split_whitespace();
            let semantics = it.next().ok_or(K::BadAttribute("ssrc-group"))?.to_owned();
            let ssrcs = it
                .map(|s| s.parse().map_err(|_| K::BadAttribute("ssrc-group")))
                .collect::<Result<_, _>>()?;
            m.ssrc_groups.push(SsrcGroup { semantics, ssrcs });
        }
        "sctp-port" => {
            m.sctp_port = Some(
                required(val, "sctp-port")?
                    .parse()
                    .map_err(|_| K::BadAttribute("sctp-port"))?,
            )
        }
        "max-message-size" => {
            m.max_message_size = Some(
                required(val, "max-message-size")?
                    .parse()
                    .map_err(|_| K::BadAttribute("max-message-size"))?,
            )
        }
        "candidate" => {
            required(val, "candidate")?;
            m.candidates
                .push(format!("candidate:{}", val.unwrap_or_default()));
        }
        "end-of-candidates" => m.end_of_candidates = true,
        "bundle-only" => m.bundle_only = true,
        _ => m.unknown.push(Attribute {
            name: name.to_owned(),
            value: val.map(str::to_owned),
        }),
    }
    Ok(())
}

/// Static payload types browsers may list without an rtpmap (RFC 3551).
fn static_payload(pt: u8) -> Option<(Codec, u32)> {
    match pt {
        0 => Some((Codec::Pcmu, 8000)),
        8 => Some((Codec::Pcma, 8000)),
        9 => Some((Codec::G722, 8000)),
        13 => Some((Codec::Other("CN".into()), 8000)),
        _ => None,
    }
}

fn finish_media(mut m: MediaSection, p: PendingPayloads) -> MediaSection {
    let mut payloads: Vec<PayloadType> = Vec::new();
    let add = |pt: u8, payloads: &mut Vec<PayloadType>| {
        if payloads.iter().any(|x| x.pt == pt) {
            return;
        }
        let found = p
            .rtpmaps
            .iter()
            .find(|r| r.0 == pt)
            .map(|r| (r.1.clone(), r.2, r.3))
            .or_else(|| static_payload(pt).map(|(c, r)| (c, r, None)));
        if let Some((codec, rate, ch)) = found {
            payloads.push(PayloadType::new(pt, codec, rate, ch));
        }
    };
    for f in &m.formats {
        if let Ok(pt @ 0..=127) = f.parse::<u8>() {
            add(pt, &mut payloads);
        }
    }
    for r in &p.rtpmaps {
        add(r.0, &mut payloads);
    }
    for (pt, params) in p.fmtps {
        match payloads.iter_mut().find(|x| x.pt == pt) {
            Some(x) if x.fmtp.is_empty() => x.fmtp = FormatParams::parse(&params),
            _ => m.unknown.push(Attribute {
                name: "fmtp".into(),
                value: Some(format!("{pt} {params}")),
            }),
        }
    }
    for (pt, fb) in p.fbs {
        match payloads.iter_mut().find(|x| x.pt == pt) {
            Some(x) => x.rtcp_fb.push(fb),
            None => m.unknown.push(Attribute {
                name: "rtcp-fb".into(),
                value: Some(format!("{pt} {fb}")),
            }),
        }
    }
    m.payloads = payloads;
    m
}
