//! The end-of-run report (text and JSON) and the per-second progress line.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::Percentiles;

/// Peer counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// Peers the plan asked for.
    pub planned: u64,
    /// Peers whose signalling succeeded (handed to an event loop).
    pub created: u64,
    /// Peers that reached `Connected` (ICE + DTLS + SRTP).
    pub connected: u64,
    /// Peers whose connection failed while the run was on.
    pub failed: u64,
    /// Signalling attempts that failed.
    pub signalling_errors: u64,
}

/// What the publishers sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentCounts {
    /// Video RTP packets.
    pub video_packets: u64,
    /// Audio RTP packets.
    pub audio_packets: u64,
    /// Video frames.
    pub video_frames: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Payload bytes (RTP payloads, before SRTP).
    pub payload_bytes: u64,
    /// Keyframe requests (PLI/FIR) the publishers received.
    pub keyframe_requests: u64,
    /// Writes or socket sends that failed.
    pub send_errors: u64,
}

/// What the subscribers received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecvCounts {
    /// RTP packets delivered by the subscribers' `Rtc`s.
    pub packets: u64,
    /// Payload bytes.
    pub payload_bytes: u64,
    /// Packets the per-stream sequence ranges hold (first to highest seen).
    pub expected: u64,
    /// Packets missing from those ranges.
    pub lost: u64,
    /// `lost / expected`.
    pub loss_ratio: f64,
    /// The per-packet checks (their fields stand in this object in JSON).
    #[serde(flatten)]
    pub checks: RecvChecks,
    /// Packets fully verified (SRTP, payload checksum, latency): all with
    /// `--verify 1/1`, about `packets / N` with `--verify 1/N`. The others were counted
    /// from their clear header.
    #[serde(default)]
    pub verified: u64,
}

/// The checks the subscribers make of what they receive, counted the same way by each
/// worker and in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecvChecks {
    /// Packets that arrived after a higher-numbered one of their stream.
    pub out_of_order: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Payloads whose trailer failed the length or checksum test.
    pub corrupt: u64,
    /// Payloads without a loadgen trailer.
    pub foreign: u64,
    /// Streams (publisher × kind) the subscribers should receive.
    pub streams_expected: u64,
    /// Streams from which at least one packet arrived.
    pub streams_receiving: u64,
}

impl RecvChecks {
    /// Adds the counts of `o` to these.
    pub(crate) fn add(&mut self, o: &RecvChecks) {
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
        self.corrupt += o.corrupt;
        self.foreign += o.foreign;
        self.streams_expected += o.streams_expected;
        self.streams_receiving += o.streams_receiving;
    }
}

/// Rates over the steady phase (after the ramp).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Seconds the steady phase lasted.
    pub seconds: f64,
    /// RTP packets sent per second (all publishers).
    pub pps_out: f64,
    /// RTP packets received per second (all subscribers).
    pub pps_in: f64,
    /// Payload megabits per second sent.
    pub mbps_out: f64,
    /// Payload megabits per second received.
    pub mbps_in: f64,
}

/// Simulcast counts (`--simulcast`): the publishers send three layers and subscriber
/// `i` of each room is capped at layer `i % 3` (`track.set_preference`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimulcastCounts {
    /// Video RTP packets sent per layer (0 = lowest).
    pub sent_by_layer: [u64; 3],
    /// Subscribers per layer cap.
    pub subscribers_by_cap: [u64; 3],
    /// RTP packets received by the subscribers of each layer cap (all packets).
    pub received_by_cap: [u64; 3],
    /// Verified packets received, by the subscriber's cap (outer) and the layer the
    /// payload says it was sent on (inner): with `--verify 1/N` about one in `N`.
    pub verified_by_cap_layer: [[u64; 3]; 3],
}

/// Counters of an in-process engine at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineSummary {
    /// Shards.
    pub shards: usize,
    /// RTP packets written to subscriber legs.
    pub rtp_forwarded: u64,
    /// Datagrams received.
    pub packets_in: u64,
    /// Datagrams sent.
    pub packets_out: u64,
    /// Drops of every reason, summed.
    pub drops: u64,
    /// Non-zero drop counters by reason.
    pub drops_by_reason: std::collections::BTreeMap<String, u64>,
    /// Shard CPU time, seconds (all shards).
    pub cpu_seconds: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Simulcast counts (`--simulcast` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulcast: Option<SimulcastCounts>,
    /// Signalling mode (`in-process`, `control`, `whip`).
    pub mode: String,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers_per_room: usize,
    /// Subscribers per room.
    pub subscribers_per_room: usize,
    /// Event-loop threads.
    pub threads: usize,
    /// Wall time of the whole run, seconds.
    pub elapsed_seconds: f64,
    /// Peer counts.
    pub peers: PeerCounts,
    /// Set-up start (offer created) to `Connected`, milliseconds.
    pub connect_ms: Percentiles,
    /// Publisher send to subscriber receive, per packet, milliseconds.
    pub latency_ms: Percentiles,
    /// Cascade mode: the same for the subscribers on the second engine only (through
    /// the relay); `latency_ms` covers every subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_relayed_ms: Option<Percentiles>,
    /// Sent media.
    pub sent: SentCounts,
    /// Received media.
    pub received: RecvCounts,
    /// Rates over the steady phase.
    pub throughput: Throughput,
    /// Engine counters (in-process mode only).
    pub engine: Option<EngineSummary>,
    /// The first signalling and teardown errors (at most 20).
    pub errors: Vec<String>,
}

impl Report {
    /// A human-readable multi-line summary.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let p = &self.peers;
        let _ = writeln!(
            s,
            "rtc-loadgen ({}): {} room(s) x ({} pub + {} sub), {} thread(s), {:.1} s",
            self.mode,
            self.rooms,
            self.publishers_per_room,
            self.subscribers_per_room,
            self.threads,
            self.elapsed_seconds
        );
        let _ = writeln!(
            s,
            "peers      planned {}  created {}  connected {}  failed {}  signalling errors {}",
            p.planned, p.created, p.connected, p.failed, p.signalling_errors
        );
        let pct = |name: &str, q: &Percentiles| {
            format!(
                "{name:<10} n={}  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (ms)",
                q.count, q.p50, q.p90, q.p99, q.p999, q.max
            )
        };
        let _ = writeln!(s, "{}", pct("connect", &self.connect_ms));
        let _ = writeln!(s, "{}", pct("latency", &self.latency_ms));
        if let Some(l) = &self.latency_relayed_ms {
            let _ = writeln!(s, "{}", pct("relayed", l));
        }
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "throughput out {:.0} pps {:.2} Mbit/s  in {:.0} pps {:.2} Mbit/s  (steady {:.1} s)",
            t.pps_out, t.mbps_out, t.pps_in, t.mbps_in, t.seconds
        );
        let o = &self.sent;
        let _ = writeln!(
            s,
            "sent       video {} pkts ({} frames, {} key)  audio {} pkts  keyframe requests {}  errors {}",
            o.video_packets,
            o.video_frames,
            o.keyframes,
            o.audio_packets,
            o.keyframe_requests,
            o.send_errors
        );
        let r = &self.received;
        let _ = writeln!(
            s,
            "received   {} pkts ({} verified)  lost {} ({:.4}%)  out-of-order {}  duplicates {}  corrupt {}  foreign {}  streams {}/{}",
            r.packets,
            r.verified,
            r.lost,
            r.loss_ratio * 100.0,
            r.checks.out_of_order,
            r.checks.duplicates,
            r.checks.corrupt,
            r.checks.foreign,
            r.checks.streams_receiving,
            r.checks.streams_expected
        );
        if let Some(e) = &self.engine {
            let _ = writeln!(
                s,
                "engine     {} shard(s)  forwarded {}  in {}  out {}  drops {}{}  cpu {:.2} s",
                e.shards,
                e.rtp_forwarded,
                e.packets_in,
                e.packets_out,
                e.drops,
                if e.drops_by_reason.is_empty() {
                    String::new()
                } else {
                    let parts: Vec<String> = e
                        .drops_by_reason
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect();
                    format!(" ({})", parts.join(", "))
                },
                e.cpu_seconds
            );
        }
        for e in &self.errors {
            let _ = writeln!(s, "error      {e}");
        }
        s
    }
}

/// A snapshot taken once a second while running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed: f64,
    /// `ramp`, `steady` or `drain`.
    pub phase: &'static str,
    /// Peers planned.
    pub planned: u64,
    /// Peers handed to event loops.
    pub created: u64,
    /// Peers connected.
    pub connected: u64,
    /// Peers failed.
    pub failed: u64,
    /// RTP packets sent per second over the last interval.
    pub pps_out: f64,
    /// RTP packets received per second over the last interval.
    pub pps_in: f64,
    /// Loss ratio so far.
    pub loss: f64,
    /// Corrupt payloads so far.
    pub corrupt: u64,
}

impl Progress {
    /// One status line.
    pub fn line(&self) -> String {
        format!(
            "[{:>6.1}s {:<6}] peers {}/{} connected ({} created, {} failed)  out {:.0} pps  in {:.0} pps  loss {:.3}%  corrupt {}",
            self.elapsed,
            self.phase,
            self.connected,
            self.planned,
            self.created,
            self.failed,
            self.pps_out,
            self.pps_in,
            self.loss * 100.0,
            self.corrupt
        )
    }
}
