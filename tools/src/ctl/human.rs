//! Human-readable output of responses and events.

use std::fmt::Write as _;

use control::{ChannelPayload, Event, Response, SessionState};

fn hist(h: &control::HistogramSummary) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} (n={})",
        h.p50, h.p90, h.p99, h.p999, h.max, h.count
    )
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Render a response for people.
pub fn render(resp: &Response) -> String {
    let mut o = String::new();
    match resp {
        Response::SessionCreated(s) => {
            let _ = writeln!(o, "session   {}", s.session);
            let _ = writeln!(o, "shard     {}", s.shard);
            let _ = writeln!(o, "ice-ufrag {}", s.ice_ufrag);
            let _ = writeln!(o, "ice-pwd   {}", s.ice_pwd);
            let _ = writeln!(
                o,
                "fingerprint {} {}",
                s.fingerprint.algorithm, s.fingerprint.value
            );
            let _ = writeln!(o, "dtls-role {:?}", s.dtls_role);
            for c in &s.candidates {
                let _ = writeln!(o, "candidate {c}");
            }
            if let Some(a) = &s.answer {
                let _ = writeln!(o, "answer:");
                for l in a.lines() {
                    let _ = writeln!(o, "  {l}");
                }
            }
        }
        Response::Renegotiated(r) => {
            if !r.added.is_empty() {
                let _ = writeln!(o, "added     {}", r.added.join(" "));
            }
            if !r.removed.is_empty() {
                let _ = writeln!(o, "removed   {}", r.removed.join(" "));
            }
            let _ = writeln!(
                o,
                "ice-restart {}",
                if r.ice_restarted { "yes" } else { "no" }
            );
            for (name, text) in [
                ("answer", &r.answer),
                ("fragment", &r.fragment),
                ("offer", &r.offer),
            ] {
                if let Some(t) = text {
                    let _ = writeln!(o, "{name}:");
                    for l in t.lines() {
                        let _ = writeln!(o, "  {l}");
                    }
                }
            }
        }
        Response::SessionStats(s) => {
            let _ = writeln!(o, "session   {} ({})", s.session, state(s.state));
            let _ = writeln!(o, "shard     {}", s.shard);
            if let Some(r) = &s.room {
                let _ = writeln!(o, "room      {r}");
            }
            let _ = writeln!(o, "age       {:.1}s", s.age_ms as f64 / 1000.0);
            if let Some(p) = &s.selected_pair {
                let _ = writeln!(o, "pair      {p}");
            }
            if let Some(r) = s.rtt_ms {
                let _ = writeln!(o, "rtt       {r:.1} ms");
            }
            let _ = writeln!(o, "in        {} pkts {} bytes", s.packets_in, s.bytes_in);
            let _ = writeln!(o, "out       {} pkts {} bytes", s.packets_out, s.bytes_out);
            if let Some(e) = s.estimate_bps {
                let _ = writeln!(o, "estimate  {e} bps ({} probes)", s.probes);
            }
            if !s.tracks.is_empty() {
                let _ = writeln!(
                    o,
                    "{:<12} {:<6} {:<4} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7}",
                    "TRACK", "KIND", "DIR", "PACKETS", "BYTES", "LOST", "NACKS", "KF_REQ", "LAYER"
                );
                let layer = |l: Option<u8>| l.map_or_else(|| "-".to_string(), |l| l.to_string());
                for t in &s.tracks {
                    let layers = if t.layer.is_none() && t.target_layer.is_none() {
                        String::new()
                    } else {
                        format!("{}->{}", layer(t.layer), layer(t.target_layer))
                    };
                    let _ = writeln!(
                        o,
                        "{:<12} {:<6} {:<4} {:>10} {:>12} {:>8} {:>8} {:>8} {:>7}",
                        t.track.0,
                        format!("{:?}", t.kind).to_lowercase(),
                        if t.inbound { "in" } else { "out" },
                        t.packets,
                        t.bytes,
                        t.lost,
                        t.nacks,
                        t.keyframe_requests,
                        layers
                    );
                    // A published video track: what each simulcast layer brings in.
                    for l in &t.layers {
                        let _ = writeln!(o, "  layer {}  {} bps", l.layer, l.bps);
                    }
                }
            }
        }
        Response::Rooms(r) => {
            let _ = writeln!(o, "{:<24} {:<30} PUBLISHERS", "ROOM", "SESSIONS");
            for room in &r.rooms {
                let _ = writeln!(
                    o,
                    "{:<24} {:<30} {}",
                    room.room.0,
                    list(&room.sessions),
                    list(&room.publishers)
                );
            }
        }
        Response::Tracks(t) => {
            let _ = writeln!(o, "{:<12} {:<6} SESSION", "TRACK", "KIND");
            for t in &t.tracks {
                let _ = writeln!(
                    o,
                    "{:<12} {:<6} {}",
                    t.track.0,
                    format!("{:?}", t.kind).to_lowercase(),
                    t.session
                );
            }
        }
        Response::EngineStats(e) => {
            let _ = writeln!(
                o,
                "uptime {:.1}s  sessions {}  rooms {}  control clients {}",
                e.uptime_ms as f64 / 1000.0,
                e.sessions,
                e.rooms,
                e.control_clients
            );
            for s in &e.shards {
                let core = s.head.core.map_or_else(|| "-".into(), |c| c.to_string());
                let _ = writeln!(
                    o,
                    "shard {} (core {core}, {}{}): {} sessions",
                    s.head.shard,
                    s.head.backend,
                    if s.head.draining { ", draining" } else { "" },
                    s.head.sessions
                );
                let _ = writeln!(
                    o,
                    "  in  {} pkts {} bytes   out {} pkts {} bytes",
                    s.packets_in, s.bytes_in, s.packets_out, s.bytes_out
                );
                let _ = writeln!(
                    o,
                    "  gso batches {}  gro batches {}",
                    s.gso_batches, s.gro_batches
                );
                let drops: Vec<String> = s.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(
                    o,
                    "  drops {} ({})",
                    s.drops_total(),
                    if drops.is_empty() {
                        "-".into()
                    } else {
                        drops.join(" ")
                    }
                );
                let _ = writeln!(o, "  loop_us {}", hist(&s.loop_us));
                for (name, h) in &s.histograms {
                    let _ = writeln!(o, "  {name} {}", hist(h));
                }
            }
        }
        Response::Shards(s) => {
            let _ = writeln!(
                o,
                "{:>5} {:>4} {:<9} {:>8} {:<8} ADDRS",
                "SHARD", "CORE", "BACKEND", "SESSIONS", "STATE"
            );
            for s in &s.shards {
                let core = s.head.core.map_or_else(|| "-".into(), |c| c.to_string());
                let _ = writeln!(
                    o,
                    "{:>5} {:>4} {:<9} {:>8} {:<8} {}",
                    s.head.shard,
                    core,
                    s.head.backend,
                    s.head.sessions,
                    if s.head.draining {
                        "draining"
                    } else {
                        "active"
                    },
                    list(&s.addrs)
                );
            }
        }
        Response::Draining(d) => {
            let _ = writeln!(
                o,
                "shard {} draining, {} sessions left",
                d.shard, d.sessions
            );
        }
        Response::EventsSubscribed(e) => {
            let names: Vec<&str> = e.kinds.iter().map(|k| k.name()).collect();
            let _ = writeln!(o, "subscribed to {}", names.join(", "));
        }
        Response::Done => {
            let _ = writeln!(o, "ok");
        }
        // Relay set-up bodies are input for the other engine: printed as JSON.
        Response::RelayInvite(x) => {
            let _ = writeln!(o, "{}", serde_json::to_string(x).unwrap_or_default());
        }
        Response::RelayAnswer(x) => {
            let _ = writeln!(o, "{}", serde_json::to_string(x).unwrap_or_default());
        }
        Response::RelayTrack(x) => {
            let _ = writeln!(o, "{}", serde_json::to_string(x).unwrap_or_default());
        }
        Response::PlainEgressed(x) => {
            for t in &x.tracks {
                let _ = writeln!(
                    o,
                    "session {} sends {}:{} ({}) to port {} ssrc {}",
                    t.session,
                    t.source.session,
                    t.source.track,
                    format!("{:?}", t.kind).to_lowercase(),
                    t.port,
                    t.ssrc
                );
            }
            o.push_str(&x.sdp);
        }
        Response::PlainIngested(x) => {
            let tracks: Vec<&str> = x.tracks.iter().map(|t| t.0.as_str()).collect();
            let _ = writeln!(
                o,
                "session {} on shard {}: send to {} (tracks {})",
                x.session,
                x.shard.0,
                x.addr,
                tracks.join(", ")
            );
            o.push_str(&x.sdp);
        }
        _ => {
            let _ = writeln!(o, "ok");
        }
    }
    o
}

fn state(s: SessionState) -> &'static str {
    s.as_str()
}

/// Render an event as one line for people.
pub fn render_event(ev: &Event) -> String {
    match ev {
        Event::SessionState(s) => format!(
            "session.state session={} {} -> {}",
            s.session,
            s.previous.as_str(),
            s.state.as_str()
        ),
        Event::TrackAdded(t) | Event::TrackRemoved(t) => format!(
            "{} session={} track={} kind={}{}",
            ev.kind().name(),
            t.session,
            t.track,
            format!("{:?}", t.kind).to_lowercase(),
            t.room
                .as_ref()
                .map(|r| format!(" room={r}"))
                .unwrap_or_default()
        ),
        Event::KeyframeRequested(k) => format!(
            "keyframe.requested session={} track={}{}",
            k.session,
            k.track,
            k.requester.map(|r| format!(" by={r}")).unwrap_or_default()
        ),
        Event::SessionFailed(f) | Event::SessionPanicked(f) => format!(
            "{} session={} shard={} reason={:?}",
            ev.kind().name(),
            f.session,
            f.shard,
            f.reason
        ),
        Event::ChannelMessage(m) => match &m.payload {
            ChannelPayload::Text(t) => format!(
                "channel.message session={} channel={} label={:?} text={t:?}",
                m.session, m.channel, m.label
            ),
            ChannelPayload::Binary(b) => format!(
                "channel.message session={} channel={} label={:?} binary={} bytes",
                m.session,
                m.channel,
                m.label,
                b.len()
            ),
        },
        other => format!("{} {:?}", other.kind().name(), other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::*;

    #[test]
    fn rooms_table() {
        let r = Response::Rooms(RoomList {
            rooms: vec![RoomInfo {
                room: RoomId("lobby".into()),
                sessions: vec![SessionId(1), SessionId(2)],
                publishers: vec![],
            }],
        });
        let s = render(&r);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("ROOM"));
        let cols: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cols, ["lobby", "1,2", "-"]);
        assert_eq!(render(&Response::Done), "ok\n");
    }

    #[test]
    fn events_one_line() {
        let e = Event::SessionState(SessionStateChange {
            session: SessionId(4),
            state: SessionState::Connected,
            previous: SessionState::Connecting,
        });
        assert_eq!(
            render_event(&e),
            "session.state session=4 connecting -> connected"
        );
        let e = Event::ChannelMessage(ChannelMessage {
            session: SessionId(1),
            channel: 2,
            label: "chat".into(),
            payload: ChannelPayload::Binary(vec![1, 2, 3]),
        });
        assert_eq!(
            render_event(&e),
            "channel.message session=1 channel=2 label=\"chat\" binary=3 bytes"
        );
    }
}
