//! Conversions between engine and control-protocol types, and the mapping of
//! [`EngineError`]s to protocol error codes.

use std::collections::BTreeMap;
use std::str::FromStr;

use control::{ControlError, ErrorCode, HistogramSummary};
use hdrhistogram::Histogram;
use rtc_core::dtls::Fingerprint;
use rtc_core::ice::{Candidate, IceConnectionState, IceCreds};
use rtc_core::media::{MediaKind, Mid};

use crate::api::{DirectParams, EngineError, MediaDesc, SessionSnapshot, ShardStats};
use crate::io::{BATCH_SIZE_BOUNDS, BATCH_SIZE_BUCKETS, BackendKind, TcpStats};

/// The protocol error for an engine error: the code chosen per variant (no catch-all,
/// so a new variant must be placed), the message being the error's own `Display`.
pub(super) fn map_err(e: EngineError) -> ControlError {
    let code = match &e {
        EngineError::UnknownSession(_)
        | EngineError::UnknownRoom(_)
        | EngineError::NoSuchShard(_)
        | EngineError::NoSuchChannel(..) => ErrorCode::NotFound,
        EngineError::ShardDraining(_) | EngineError::Timeout(_) | EngineError::ShardDown(_) => {
            ErrorCode::Unavailable
        }
        EngineError::NotInRoom(..) | EngineError::AddressInUse(_) => ErrorCode::Conflict,
        EngineError::NoRoute(_) => ErrorCode::BadParams,
        EngineError::Rtc(_) => ErrorCode::BadParams,
        EngineError::SessionPanicked(_) => ErrorCode::BadParams,
        EngineError::ShardGone(_) => ErrorCode::ShuttingDown,
        EngineError::Config(_) | EngineError::Io(_) => ErrorCode::Internal,
        EngineError::ShardFull { .. } => ErrorCode::ShardFull,
        EngineError::EngineFull { .. } => ErrorCode::EngineFull,
        EngineError::TooManyMedia { .. } => ErrorCode::TooManyMedia,
        EngineError::TooManyRooms { .. } => ErrorCode::TooManyRooms,
        EngineError::TooManyLegs { .. } => ErrorCode::TooManyLegs,
    };
    ControlError::new(code, e.to_string())
}

pub(super) fn track_id(mid: Mid) -> control::TrackId {
    control::TrackId(mid.as_str().to_owned())
}

pub(super) fn kind_of(k: MediaKind) -> control::MediaKind {
    match k {
        MediaKind::Audio => control::MediaKind::Audio,
        MediaKind::Video => control::MediaKind::Video,
    }
}

pub(super) fn backend_name(b: BackendKind) -> &'static str {
    match b {
        BackendKind::IoUring => "io_uring",
        BackendKind::Portable => "portable",
    }
}

pub(super) fn shard_id(i: usize) -> control::ShardId {
    control::ShardId(u32::try_from(i).unwrap_or(u32::MAX))
}

/// A nanosecond histogram summary in microseconds (rounded up).
pub(super) fn in_us(s: HistogramSummary) -> HistogramSummary {
    HistogramSummary {
        count: s.count,
        p50: s.p50.div_ceil(1000),
        p90: s.p90.div_ceil(1000),
        p99: s.p99.div_ceil(1000),
        p999: s.p999.div_ceil(1000),
        max: s.max.div_ceil(1000),
    }
}

pub(super) fn parse_mid(t: &control::TrackId) -> Result<Mid, ControlError> {
    Mid::new(&t.0).ok_or_else(|| ControlError::not_found(format!("no track {:?}", t.0)))
}

/// The engine's DTLS role, read from the `a=setup` attribute of its answer.
pub(super) fn answer_role(answer: &str) -> control::DtlsRole {
    if answer.lines().any(|l| l.trim_end() == "a=setup:passive") {
        control::DtlsRole::Server
    } else {
        control::DtlsRole::Client
    }
}

pub(super) fn direct_params(d: &control::DirectParams) -> Result<DirectParams, ControlError> {
    let ice_char = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
    if !(4..=256).contains(&d.ice_ufrag.len()) || !d.ice_ufrag.chars().all(ice_char) {
        return Err(ControlError::bad_params(
            "direct.ice_ufrag: 4 to 256 ICE characters (RFC 8839)",
        ));
    }
    if !(22..=256).contains(&d.ice_pwd.len()) || !d.ice_pwd.chars().all(ice_char) {
        return Err(ControlError::bad_params(
            "direct.ice_pwd: 22 to 256 ICE characters (RFC 8839)",
        ));
    }
    if d.ice_lite {
        return Err(ControlError::bad_params(
            "direct.ice_lite: the engine is an ICE-lite agent, so the remote must be a full agent",
        ));
    }
    let fp = Fingerprint::from_str(&format!(
        "{} {}",
        d.fingerprint.algorithm, d.fingerprint.value
    ))
    .map_err(|e| ControlError::bad_params(format!("direct.fingerprint: {e}")))?;
    for c in &d.candidates {
        // The engine is ICE-lite: it learns the remote address from the peer's checks
        // and needs no remote candidates, but malformed ones are still refused.
        Candidate::from_sdp_string(c)
            .map_err(|e| ControlError::bad_params(format!("direct.candidates: {e}")))?;
    }
    Ok(DirectParams {
        remote_ice: IceCreds {
            ufrag: d.ice_ufrag.clone(),
            pass: d.ice_pwd.clone(),
        },
        remote_fingerprint: fp,
        dtls_active: d.remote_dtls_role == control::DtlsRole::Server,
        media: Vec::new(),
        rx_ssrcs: Vec::new(),
    })
}

pub(super) fn fingerprint_of(fp: &Fingerprint) -> control::Fingerprint {
    let s = fp.to_string();
    let (alg, value) = s.split_once(' ').unwrap_or((s.as_str(), ""));
    control::Fingerprint {
        algorithm: alg.to_owned(),
        value: value.to_owned(),
    }
}

pub(super) fn stats_of(
    snap: &SessionSnapshot,
    room: Option<control::RoomId>,
    age_ms: u64,
    media: &[MediaDesc],
) -> control::SessionStats {
    let state = if !snap.alive {
        control::SessionState::Closed
    } else {
        match snap.ice_state {
            IceConnectionState::Disconnected => control::SessionState::Disconnected,
            IceConnectionState::Failed => control::SessionState::Failed,
            _ if snap.connected => control::SessionState::Connected,
            IceConnectionState::New => control::SessionState::New,
            _ => control::SessionState::Connecting,
        }
    };
    let selected_pair = match (snap.local_addr, snap.remote_addr) {
        (Some(l), Some(r)) => Some(format!("{l} -> {r}")),
        _ => None,
    };
    let tracks = snap
        .tracks
        .iter()
        .filter_map(|t| {
            let kind = media.iter().find(|m| m.mid == t.mid)?.kind;
            Some(control::TrackStats {
                track: track_id(t.mid),
                kind: kind_of(kind),
                inbound: t.inbound,
                packets: t.packets,
                bytes: t.bytes,
                lost: t.lost,
                nacks: t.nacks,
                keyframe_requests: t.keyframe_requests,
                layer: t.layer,
                target_layer: t.target_layer,
                layers: (0u8..)
                    .zip(t.layer_bps)
                    .filter_map(|(layer, bps)| Some(control::LayerRate { layer, bps: bps? }))
                    .collect(),
            })
        })
        .collect();
    control::SessionStats {
        session: control::SessionId(snap.id.0),
        shard: shard_id(snap.shard),
        state,
        room,
        age_ms,
        selected_pair,
        rtt_ms: snap.rtt.map(|d| d.as_secs_f64() * 1000.0),
        packets_in: snap.peer.datagrams_in,
        packets_out: snap.peer.datagrams_out,
        bytes_in: snap.peer.bytes_in,
        bytes_out: snap.peer.bytes_out,
        tracks,
        dtls_version: snap.peer.dtls_version.map(|v| {
            match v {
                rtc_core::dtls::DtlsVersion::Dtls12 => "1.2",
                rtc_core::dtls::DtlsVersion::Dtls13 => "1.3",
            }
            .to_string()
        }),
        estimate_bps: snap.estimate_bps,
        probes: snap.probes,
    }
}

/// The drop counters of a shard under their `engine.stats` wire names (the keys of
/// `ShardStats::drops` in `docs/control-protocol.md`).
///
/// The one place the control plane names drop reasons. When `engine::api` offers its own
/// named list (`DropCounters::named()`), derive this from it, keeping these wire names.
fn drop_reasons(s: &ShardStats) -> [(&'static str, u64); 17] {
    let d = s.drops;
    let io = s.io.drops;
    [
        ("unknown_source", d.unknown_source),
        ("malformed", d.malformed),
        ("srtp_auth", d.srtp_auth),
        ("rtc_dropped", d.rtc_dropped),
        ("no_route", d.no_route),
        ("leg_rewrite", d.leg_rewrite),
        ("leg_not_ready", d.leg_not_ready),
        ("cross_shard_full", d.cross_shard_full),
        ("dead_session", d.dead_session),
        ("duplicate", d.duplicate),
        ("send_queue_full", io.queue_full),
        ("send_too_large", io.too_large),
        ("send_would_block", io.send_would_block),
        ("send_error", io.send_error),
        ("recv_truncated", io.recv_truncated),
        ("recv_error", io.recv_error),
        ("tcp_send_full", io.tcp_send_full),
    ]
}

/// Which shard, where it runs and its load, as both `engine.stats` and `shard.list` say.
pub(super) fn shard_head(s: &ShardStats, draining: bool) -> control::ShardHead {
    control::ShardHead {
        shard: shard_id(s.shard),
        core: s.core.and_then(|c| u32::try_from(c).ok()),
        backend: backend_name(s.backend).to_owned(),
        sessions: s.sessions as u64,
        draining,
    }
}

/// ICE-TCP connection events under their `engine.stats` names (`detail.tcp`).
fn tcp_events(t: &TcpStats) -> BTreeMap<String, u64> {
    let TcpStats {
        open: _,
        accepted,
        refused,
        authenticated,
        closed_peer,
        closed_garbage,
        closed_unauthenticated,
        closed_blocked,
        closed_local,
        rx_frames: _,
        tx_frames: _,
    } = *t;
    [
        ("accepted", accepted),
        ("refused", refused),
        ("authenticated", authenticated),
        ("closed_peer", closed_peer),
        ("closed_garbage", closed_garbage),
        ("closed_unauthenticated", closed_unauthenticated),
        ("closed_blocked", closed_blocked),
        ("closed_local", closed_local),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub(super) fn shard_stats(s: &ShardStats, draining: bool) -> control::ShardStats {
    let mut drops = BTreeMap::new();
    for (k, v) in drop_reasons(s) {
        drops.insert(k.to_owned(), v);
    }
    let mut histograms = BTreeMap::new();
    histograms.insert(
        "forward_us".to_owned(),
        in_us(control::summarize(&s.forward_latency_ns)),
    );
    control::ShardStats {
        head: shard_head(s, draining),
        healthy: s.alive,
        packets_in: s.packets_in,
        packets_out: s.packets_out,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        drops,
        gso_batches: s.io.gso_sends,
        gro_batches: s.io.gro_coalesced,
        loop_us: in_us(control::summarize(&s.loop_ns)),
        histograms,
        forward_ns: s.forward_ns.clone(),
        detail: control::ShardDetail {
            legs: s.legs as u64,
            routes: s.routes as u64,
            rtp_forwarded: s.rtp_forwarded,
            fwd_in_place: s.fwd_in_place,
            cross_shard_out: s.cross_shard_out,
            cross_shard_in: s.cross_shard_in,
            keyframe_requests: s.keyframe_requests,
            rtx_resent: s.rtx_resent,
            rtx_unanswered: s.rtx_unanswered,
            rtx_refused: s.rtx_refused,
            handshakes: s.handshakes,
            handshake_failures: s.handshake_failures,
            handshake_ns: latency_buckets(&s.handshake_ns, &HANDSHAKE_BOUNDS_NS),
            tcp_open: s.io.tcp.open,
            tcp: tcp_events(&s.io.tcp),
            uring_sqes: s.io.uring_sqes,
            uring_cqes: s.io.uring_cqes,
            send_batches: batch_sizes(&s.io.tx_batch_sizes, s.io.tx_datagrams),
            recv_batches: batch_sizes(&s.io.rx_batch_sizes, s.io.rx_datagrams),
            cpu_ns: u64::try_from(s.cpu_time.as_nanos()).unwrap_or(u64::MAX),
        },
        maps: s.maps.clone(),
    }
}

/// Bucket bounds of [`control::ShardDetail::handshake_ns`]: 1 ms to 30 s, then the rest.
const HANDSHAKE_BOUNDS_NS: [u64; 15] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    u64::MAX,
];

fn batch_sizes(counts: &[u64; BATCH_SIZE_BUCKETS], datagrams: u64) -> control::SizeBuckets {
    control::SizeBuckets {
        bounds: BATCH_SIZE_BOUNDS.to_vec(),
        counts: counts.to_vec(),
        sum: datagrams,
    }
}

/// The values of `h` counted into buckets with the upper bounds `bounds` (ascending, the
/// last one `u64::MAX`). A value lands in the first bucket whose bound is at least the
/// highest value of its hdrhistogram bucket (within the histogram's 0.1 % precision).
pub(super) fn latency_buckets(h: &Histogram<u64>, bounds: &[u64]) -> control::LatencyBuckets {
    let mut counts = vec![0u64; bounds.len()];
    for v in h.iter_recorded() {
        let i = bounds.partition_point(|b| *b < v.value_iterated_to());
        if let Some(c) = counts.get_mut(i.min(bounds.len().saturating_sub(1))) {
            *c += v.count_at_value();
        }
    }
    control::LatencyBuckets {
        bucket_ns: bounds.to_vec(),
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RoomId, SessionId};

    #[test]
    fn answer_role_reads_setup() {
        assert_eq!(
            answer_role("v=0\r\na=setup:passive\r\n"),
            control::DtlsRole::Server
        );
        assert_eq!(
            answer_role("v=0\r\na=setup:active\r\n"),
            control::DtlsRole::Client
        );
    }

    #[test]
    fn latency_buckets_count_each_value_once_in_its_bucket() {
        let mut h = crate::shard::histogram();
        for v in [500, 1_000, 1_001, 7_000, 7_000, 3_000_000_000] {
            h.record(v).expect("in range");
        }
        let b = latency_buckets(&h, &[1_000, 10_000, u64::MAX]);
        assert_eq!(b.bucket_ns, vec![1_000, 10_000, u64::MAX]);
        assert_eq!(b.counts, vec![2, 3, 1]);
        let empty = latency_buckets(&crate::shard::histogram(), &HANDSHAKE_BOUNDS_NS);
        assert_eq!(empty.counts, vec![0; HANDSHAKE_BOUNDS_NS.len()]);
    }

    #[test]
    fn microsecond_summary_rounds_up() {
        let s = in_us(HistogramSummary {
            count: 3,
            p50: 1,
            p90: 1000,
            p99: 1001,
            p999: 0,
            max: 2_500_000,
        });
        assert_eq!(
            (s.count, s.p50, s.p90, s.p99, s.p999, s.max),
            (3, 1, 1, 2, 0, 2500)
        );
    }

    fn direct() -> control::DirectParams {
        control::DirectParams {
            ice_ufrag: "abcd".into(),
            ice_pwd: "0123456789012345678901".into(),
            fingerprint: control::Fingerprint {
                algorithm: "sha-256".into(),
                value: vec!["AB"; 32].join(":"),
            },
            remote_dtls_role: control::DtlsRole::Client,
            candidates: vec!["candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host".into()],
            ice_lite: false,
        }
    }

    #[test]
    fn direct_params_map_and_validate() {
        let p = direct_params(&direct()).expect("valid");
        assert!(!p.dtls_active, "remote client → engine is the DTLS server");
        assert_eq!(p.remote_ice.ufrag, "abcd");
        assert_eq!(p.remote_fingerprint.bytes, vec![0xAB; 32]);
        let mut d = direct();
        d.remote_dtls_role = control::DtlsRole::Server;
        assert!(direct_params(&d).expect("valid").dtls_active);

        let bad = |f: &dyn Fn(&mut control::DirectParams)| {
            let mut d = direct();
            f(&mut d);
            direct_params(&d).expect_err("must be refused").code
        };
        assert_eq!(bad(&|d| d.ice_ufrag = "ab".into()), ErrorCode::BadParams);
        assert_eq!(bad(&|d| d.ice_pwd = "short".into()), ErrorCode::BadParams);
        assert_eq!(bad(&|d| d.ice_lite = true), ErrorCode::BadParams);
        assert_eq!(
            bad(&|d| d.fingerprint.value = "AB:CD".into()),
            ErrorCode::BadParams
        );
        assert_eq!(
            bad(&|d| d.fingerprint.algorithm = "md5".into()),
            ErrorCode::BadParams
        );
        assert_eq!(
            bad(&|d| d.candidates = vec!["garbage".into()]),
            ErrorCode::BadParams
        );
    }

    #[test]
    fn fingerprint_round_trips_through_wire_form() {
        let fp =
            Fingerprint::from_str(&format!("sha-256 {}", vec!["0F"; 32].join(":"))).expect("valid");
        let w = fingerprint_of(&fp);
        assert_eq!(w.algorithm, "sha-256");
        assert_eq!(w.value, vec!["0F"; 32].join(":"));
    }

    #[test]
    fn errors_map_to_codes() {
        let c = |e| map_err(e).code;
        assert_eq!(
            c(EngineError::UnknownSession(SessionId(1))),
            ErrorCode::NotFound
        );
        assert_eq!(c(EngineError::UnknownRoom(RoomId(1))), ErrorCode::NotFound);
        assert_eq!(c(EngineError::NoSuchShard(9)), ErrorCode::NotFound);
        assert_eq!(c(EngineError::ShardDraining(0)), ErrorCode::Unavailable);
        assert_eq!(c(EngineError::Timeout(0)), ErrorCode::Unavailable);
        assert_eq!(c(EngineError::ShardGone(0)), ErrorCode::ShuttingDown);
        assert_eq!(c(EngineError::ShardDown(0)), ErrorCode::Unavailable);
        assert_eq!(
            c(EngineError::Rtc(rtc_core::RtcError::NotAlive)),
            ErrorCode::BadParams
        );
        assert_eq!(
            c(EngineError::NotInRoom(SessionId(1), RoomId(1))),
            ErrorCode::Conflict
        );
        assert_eq!(
            c(EngineError::Config(crate::ConfigError::NoBindAddress)),
            ErrorCode::Internal
        );
        // Every cap has its own code.
        let caps = [
            c(EngineError::ShardFull { shard: 0, limit: 1 }),
            c(EngineError::EngineFull { limit: 1 }),
            c(EngineError::TooManyMedia {
                sections: 2,
                limit: 1,
            }),
            c(EngineError::TooManyRooms { limit: 1 }),
            c(EngineError::TooManyLegs {
                room: RoomId(1),
                limit: 1,
            }),
        ];
        assert_eq!(
            caps,
            [
                ErrorCode::ShardFull,
                ErrorCode::EngineFull,
                ErrorCode::TooManyMedia,
                ErrorCode::TooManyRooms,
                ErrorCode::TooManyLegs,
            ]
        );
    }
}
