//! `--metrics ADDR`: the engine's statistics in the Prometheus text format (version
//! 0.0.4) at `http://ADDR/metrics`, encoded by the `prometheus-client` crate.
//!
//! A scrape costs what one `engine.stats` control request costs: every shard answers a
//! stats request between two loop iterations with the counters it keeps anyway (no
//! per-packet work is added by scraping). Each scrape is a fresh snapshot encoded by a
//! [`Collector`]; nothing is cached between scrapes.
//!
//! HTTP is hyper's HTTP/1.1 server on a one-thread tokio runtime of its own: at most
//! [`MAX_CONNECTIONS`] connections at once (more are closed), the request head within
//! [`HEAD_TIMEOUT`], a connection closed after [`CONNECTION_LIFETIME`]. Only `GET` and
//! `HEAD` of `/metrics` are served.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::{Semaphore, watch};

/// Connections served at once (a connection beyond them is closed when accepted).
pub const MAX_CONNECTIONS: usize = 16;
/// The whole request head must arrive within this.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection (keep-alive included) is closed after this.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// What one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The engine's statistics (`engine.stats`); `None` when a shard did not answer.
    pub stats: Option<control::EngineStats>,
    /// The daemon's resident set size in bytes, when `/proc` tells it.
    pub rss_bytes: Option<u64>,
}

/// Takes a [`Snapshot`] (blocking: it asks every shard).
pub type Source = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// The daemon's resident set size (`VmRSS` of `/proc/self/status`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `snapshot` in the Prometheus text format.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    // Writing into a String cannot fail, and our collector returns no error of its own:
    // an error here would be a bug in the encoder. Serve what was written rather than
    // panic in the scrape path.
    if let Err(e) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// One label set: `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

fn shard_label(s: &control::ShardStats) -> Labels {
    vec![("shard", s.head.shard.0.to_string())]
}

/// One metric family of type `ty`, a row per label set.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    (name, help, unit): (&str, &str, Option<&Unit>),
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, ty)?;
    for (labels, metric) in rows {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Defines `$name`: one family of `$wrap` values (type `$ty`), a row per label set.
macro_rules! const_family {
    ($(#[$doc:meta])* $name:ident, $wrap:ident, $ty:expr) => {
        $(#[$doc])*
        fn $name<V>(
            enc: &mut DescriptorEncoder<'_>,
            name: &str,
            help: &str,
            unit: Option<&Unit>,
            rows: impl IntoIterator<Item = (Labels, V)>,
        ) -> fmt::Result
        where
            $wrap<V>: EncodeMetric,
        {
            let rows = rows.into_iter().map(|(l, v)| (l, $wrap::new(v)));
            family(enc, (name, help, unit), $ty, rows)
        }
    };
}

const_family!(
    /// A gauge family, a row per label set.
    gauge,
    ConstGauge,
    MetricType::Gauge
);
const_family!(
    /// A counter family, a row per label set.
    counter,
    ConstCounter,
    MetricType::Counter
);

/// One family with a single, unlabelled value.
fn gauge1<V>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// One classic histogram: per-bucket (not cumulative) counts under upper bounds, the
/// sum and the count.
struct Hist {
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl IntoIterator<Item = (Labels, Hist)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Histogram)?;
    for (labels, h) in rows {
        m.encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
    }
    Ok(())
}

/// Bucket bound `b` in the exposition's unit (`scale` units per step of `b`);
/// `u64::MAX` is `+Inf`.
fn bound(b: u64, scale: f64) -> f64 {
    if b == u64::MAX {
        f64::INFINITY
    } else {
        b as f64 / scale
    }
}

/// Bucket bounds of the forwarding-latency histogram served (1 µs to 100 ms, then the
/// rest): the shards' fine log2-linear buckets folded into a few `le` series.
const FORWARD_BOUNDS_NS: [u64; 15] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    100_000_000,
    u64::MAX,
];

/// A latency distribution in seconds. The shards publish bucket counts only, so the sum
/// is estimated: each value at the middle of its bucket (the lower bound for the last,
/// open-ended bucket).
fn latency_hist(b: &control::LatencyBuckets) -> Hist {
    let mut buckets = Vec::with_capacity(b.bucket_ns.len());
    let mut sum_ns = 0f64;
    let mut count = 0u64;
    let mut lower = 0u64;
    for (&upper, &n) in b.bucket_ns.iter().zip(&b.counts) {
        let mid = if upper == u64::MAX {
            lower as f64
        } else {
            (lower as f64 + upper as f64) / 2.0
        };
        sum_ns += mid * n as f64;
        count = count.saturating_add(n);
        buckets.push((bound(upper, 1e9), n));
        lower = upper;
    }
    Hist {
        buckets,
        sum: sum_ns / 1e9,
        count,
    }
}

fn size_hist(b: &control::SizeBuckets) -> Hist {
    let buckets: Vec<(f64, u64)> = b
        .bounds
        .iter()
        .zip(&b.counts)
        .map(|(&upper, &n)| (bound(upper, 1.0), n))
        .collect();
    Hist {
        count: buckets.iter().map(|(_, n)| n).sum(),
        buckets,
        sum: b.sum as f64,
    }
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let snap = &self.0;
        gauge1(
            &mut enc,
            "rtc_engine_up",
            "1 when every live shard answered this scrape's stats request, else 0 (then only process metrics follow)",
            None,
            i64::from(snap.stats.is_some()),
        )?;
        if let Some(rss) = snap.rss_bytes {
            gauge1(
                &mut enc,
                "process_resident_memory",
                "Resident set size of the rtc-engine process",
                Some(&Unit::Bytes),
                rss,
            )?;
        }
        let Some(st) = &snap.stats else {
            return Ok(());
        };
        let e = &mut enc;
        gauge1(
            e,
            "rtc_engine_uptime",
            "Time since the engine started",
            Some(&Unit::Seconds),
            st.uptime_ms as f64 / 1000.0,
        )?;
        gauge1(e, "rtc_engine_rooms", "Live rooms", None, st.rooms)?;
        gauge1(
            e,
            "rtc_engine_control_clients",
            "Connected control-socket clients",
            None,
            st.control_clients,
        )?;
        let sh = &st.shards;
        gauge(
            e,
            "rtc_shard_info",
            "Always 1; labels: the shard's I/O backend and the core it is pinned to",
            None,
            sh.iter().map(|s| {
                let mut l = shard_label(s);
                l.push(("backend", s.head.backend.clone()));
                l.push((
                    "core",
                    s.head.core.map(|c| c.to_string()).unwrap_or_default(),
                ));
                (l, 1i64)
            }),
        )?;
        gauge(
            e,
            "rtc_shard_healthy",
            "1 while the shard thread runs, 0 after it died",
            None,
            sh.iter().map(|s| (shard_label(s), i64::from(s.healthy))),
        )?;
        gauge(
            e,
            "rtc_shard_draining",
            "1 while the shard is drained (takes no new sessions)",
            None,
            sh.iter()
                .map(|s| (shard_label(s), i64::from(s.head.draining))),
        )?;
        gauge(
            e,
            "rtc_shard_sessions",
            "Live sessions",
            None,
            sh.iter().map(|s| (shard_label(s), s.head.sessions)),
        )?;
        gauge(
            e,
            "rtc_shard_legs",
            "Forwarding legs (subscribed tracks) with their subscriber on the shard",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.legs)),
        )?;
        gauge(
            e,
            "rtc_shard_routes",
            "Published tracks with subscribers on or via the shard",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.routes)),
        )?;
        counter(
            e,
            "rtc_shard_received_packets",
            "UDP datagrams received",
            None,
            sh.iter().map(|s| (shard_label(s), s.packets_in)),
        )?;
        counter(
            e,
            "rtc_shard_sent_packets",
            "UDP datagrams queued for sending",
            None,
            sh.iter().map(|s| (shard_label(s), s.packets_out)),
        )?;
        counter(
            e,
            "rtc_shard_received",
            "UDP payload bytes received",
            Some(&Unit::Bytes),
            sh.iter().map(|s| (shard_label(s), s.bytes_in)),
        )?;
        counter(
            e,
            "rtc_shard_sent",
            "UDP payload bytes queued for sending",
            Some(&Unit::Bytes),
            sh.iter().map(|s| (shard_label(s), s.bytes_out)),
        )?;
        counter(
            e,
            "rtc_shard_forwarded_packets",
            "RTP packets written to subscriber legs",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.rtp_forwarded)),
        )?;
        counter(
            e,
            "rtc_shard_forwarded_in_place_packets",
            "Of the forwarded packets, those protected in place in their send buffer and \
             queued at once (the rest waited in the subscriber's pacer)",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.fwd_in_place)),
        )?;
        counter(
            e,
            "rtc_shard_cross_shard_packets",
            "RTP packets handed between shards for rooms spread over shards, by direction \
             (out: to other shards, in: from other shards)",
            None,
            sh.iter().flat_map(|s| {
                [
                    ("out", s.detail.cross_shard_out),
                    ("in", s.detail.cross_shard_in),
                ]
                .into_iter()
                .map(move |(dir, n)| {
                    let mut l = shard_label(s);
                    l.push(("direction", dir.to_string()));
                    (l, n)
                })
            }),
        )?;
        counter(
            e,
            "rtc_shard_keyframe_requests",
            "Keyframe requests (PLI/FIR) sent to publishers",
            None,
            sh.iter()
                .map(|s| (shard_label(s), s.detail.keyframe_requests)),
        )?;
        counter(
            e,
            "rtc_shard_retransmissions",
            "NACKed packets by outcome: resent from the publishers' packet caches, \
             unanswered (no longer cached, already resent, queue full), refused by the \
             subscriber's pacer (duplicate within a round trip, budget spent)",
            None,
            sh.iter().flat_map(|s| {
                [
                    ("resent", s.detail.rtx_resent),
                    ("unanswered", s.detail.rtx_unanswered),
                    ("refused", s.detail.rtx_refused),
                ]
                .into_iter()
                .map(move |(outcome, n)| {
                    let mut l = shard_label(s);
                    l.push(("outcome", outcome.to_string()));
                    (l, n)
                })
            }),
        )?;
        counter(
            e,
            "rtc_shard_dropped_packets",
            "Dropped datagrams and packets by reason (the keys of engine.stats drops)",
            None,
            sh.iter().flat_map(|s| {
                s.drops.iter().map(move |(reason, n)| {
                    let mut l = shard_label(s);
                    l.push(("reason", reason.clone()));
                    (l, *n)
                })
            }),
        )?;
        gauge(
            e,
            "rtc_shard_tcp_connections",
            "ICE-TCP connections open",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.tcp_open)),
        )?;
        counter(
            e,
            "rtc_shard_tcp_connection_events",
            "ICE-TCP connections accepted, refused, authenticated and closed, by event \
             (the keys of engine.stats detail.tcp)",
            None,
            sh.iter().flat_map(|s| {
                s.detail.tcp.iter().map(move |(event, n)| {
                    let mut l = shard_label(s);
                    l.push(("event", event.clone()));
                    (l, *n)
                })
            }),
        )?;
        counter(
            e,
            "rtc_shard_handshakes",
            "Sessions that connected (ICE and DTLS up)",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.handshakes)),
        )?;
        counter(
            e,
            "rtc_shard_handshake_failures",
            "Sessions that ended without connecting (failed, timed out, panicked)",
            None,
            sh.iter()
                .map(|s| (shard_label(s), s.detail.handshake_failures)),
        )?;
        histogram(
            e,
            "rtc_shard_handshake_duration",
            "Session creation to connected (ICE and DTLS up); _sum estimated from the buckets",
            Some(&Unit::Seconds),
            sh.iter()
                .map(|s| (shard_label(s), latency_hist(&s.detail.handshake_ns))),
        )?;
        histogram(
            e,
            "rtc_shard_forward_latency",
            "Engine-side forwarding latency per forwarded packet (receive to send hand-off); _sum estimated from the buckets",
            Some(&Unit::Seconds),
            sh.iter().map(|s| {
                let coarse = s.forward_ns.coarsen(&FORWARD_BOUNDS_NS);
                (shard_label(s), latency_hist(&coarse))
            }),
        )?;
        histogram(
            e,
            "rtc_shard_send_batch_datagrams",
            "Datagrams per send message (more than 1: a GSO batch)",
            None,
            sh.iter()
                .map(|s| (shard_label(s), size_hist(&s.detail.send_batches))),
        )?;
        histogram(
            e,
            "rtc_shard_receive_batch_datagrams",
            "Datagrams per received buffer (more than 1: GRO-coalesced)",
            None,
            sh.iter()
                .map(|s| (shard_label(s), size_hist(&s.detail.recv_batches))),
        )?;
        counter(
            e,
            "rtc_shard_uring_submissions",
            "io_uring submission queue entries pushed (0 on the portable backend)",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.uring_sqes)),
        )?;
        counter(
            e,
            "rtc_shard_uring_completions",
            "io_uring completion queue entries reaped (0 on the portable backend)",
            None,
            sh.iter().map(|s| (shard_label(s), s.detail.uring_cqes)),
        )?;
        counter(
            e,
            "rtc_shard_cpu",
            "CPU time used by the shard thread",
            Some(&Unit::Seconds),
            sh.iter()
                .map(|s| (shard_label(s), s.detail.cpu_ns as f64 / 1e9)),
        )?;
        Ok(())
    }
}

/// The metrics endpoint: a thread serving HTTP until [`MetricsServer::stop`].
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` and serves scrapes of `source` on a new thread.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the runtime or its thread cannot be created.
    pub fn start(addr: SocketAddr, source: Source) -> io::Result<MetricsServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2)
            .thread_name("metrics-scrape")
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, source, stopped).await,
                        Err(e) => tracing::error!(error = %e, "metrics endpoint cannot serve"),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    source: Source,
    mut stopped: watch::Receiver<bool>,
) {
    let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => match Arc::clone(&conns).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(serve_scrape(stream, Arc::clone(&source), permit));
                }
                // Over the cap a new connection is closed at once: a scraper retries at
                // its next interval, and a flood of connections queues no work here.
                Err(_) => drop(stream),
            },
            Err(e) => {
                // Out of file descriptors and the like: the connection stays queued;
                // retrying at once would spin.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one connection while holding one of the [`MAX_CONNECTIONS`] permits.
async fn serve_scrape(
    stream: tokio::net::TcpStream,
    source: Source,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let svc = service_fn(move |req| {
        let source = Arc::clone(&source);
        async move { Ok::<_, Infallible>(handle(req, source).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(16 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
}

fn text(status: StatusCode, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(req: hyper::Request<Incoming>, source: Source) -> hyper::Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return text(StatusCode::NOT_FOUND, "metrics are at /metrics\n");
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // Taking the snapshot blocks (one request to every shard, bounded by the engine's
    // call timeout): off the runtime's only thread.
    let body = match tokio::task::spawn_blocking(move || render(source())).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n");
        }
    };
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut r = hyper::Response::new(Full::new(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(i: u32) -> control::ShardStats {
        let mut drops = std::collections::BTreeMap::new();
        drops.insert("srtp_auth".to_owned(), 3);
        control::ShardStats {
            head: control::ShardHead {
                shard: control::ShardId(i),
                core: Some(i),
                backend: "io_uring".into(),
                sessions: 4,
                draining: false,
            },
            healthy: true,
            packets_in: 100,
            packets_out: 900,
            bytes_in: 10_000,
            bytes_out: 90_000,
            drops,
            gso_batches: 0,
            gro_batches: 0,
            loop_us: control::HistogramSummary::default(),
            histograms: Default::default(),
            forward_ns: control::LatencyBuckets {
                bucket_ns: vec![1_000, 10_000, u64::MAX],
                counts: vec![5, 4, 1],
            },
            detail: control::ShardDetail {
                legs: 9,
                cross_shard_out: 6,
                handshakes: 4,
                keyframe_requests: 2,
                rtx_resent: 7,
                rtx_refused: 1,
                send_batches: control::SizeBuckets {
                    bounds: vec![1, 2, u64::MAX],
                    counts: vec![3, 2, 1],
                    sum: 3 + 4 + 10,
                },
                ..control::ShardDetail::default()
            },
            maps: Default::default(),
        }
    }

    #[test]
    fn exposition_has_families_labels_and_cumulative_buckets() {
        let out = render(Snapshot {
            stats: Some(control::EngineStats {
                uptime_ms: 1500,
                sessions: 8,
                rooms: 1,
                control_clients: 0,
                shards: vec![shard(0), shard(1)],
            }),
            rss_bytes: Some(4096),
        });
        for line in [
            "# TYPE rtc_shard_received_packets_total counter",
            "rtc_shard_received_packets_total{shard=\"1\"} 100",
            "rtc_shard_received_bytes_total{shard=\"0\"} 10000",
            "rtc_shard_legs{shard=\"0\"} 9",
            "rtc_shard_keyframe_requests_total{shard=\"1\"} 2",
            "rtc_shard_cross_shard_packets_total{shard=\"1\",direction=\"out\"} 6",
            "rtc_shard_retransmissions_total{shard=\"0\",outcome=\"resent\"} 7",
            "rtc_shard_retransmissions_total{shard=\"0\",outcome=\"unanswered\"} 0",
            "rtc_shard_retransmissions_total{shard=\"0\",outcome=\"refused\"} 1",
            "rtc_shard_dropped_packets_total{shard=\"0\",reason=\"srtp_auth\"} 3",
            "rtc_shard_info{shard=\"0\",backend=\"io_uring\",core=\"0\"} 1",
            "rtc_engine_up 1",
            "rtc_engine_uptime_seconds 1.5",
            "process_resident_memory_bytes 4096",
            "# TYPE rtc_shard_forward_latency_seconds histogram",
            "rtc_shard_forward_latency_seconds_bucket{shard=\"0\",le=\"1e-06\"} 5",
            "rtc_shard_forward_latency_seconds_bucket{shard=\"0\",le=\"1e-05\"} 9",
            "rtc_shard_forward_latency_seconds_bucket{shard=\"0\",le=\"+Inf\"} 10",
            "rtc_shard_forward_latency_seconds_count{shard=\"0\"} 10",
            "rtc_shard_send_batch_datagrams_bucket{shard=\"0\",le=\"2\"} 5",
            "rtc_shard_send_batch_datagrams_sum{shard=\"0\"} 17.0",
            "rtc_shard_send_batch_datagrams_count{shard=\"0\"} 6",
        ] {
            assert!(out.lines().any(|l| l == line), "no line {line:?} in\n{out}");
        }
    }

    #[test]
    fn unanswered_stats_show_as_down_with_process_metrics_only() {
        let out = render(Snapshot {
            stats: None,
            rss_bytes: Some(1024),
        });
        assert!(out.lines().any(|l| l == "rtc_engine_up 0"), "{out}");
        assert!(!out.contains("rtc_shard_"), "{out}");
    }

    #[test]
    fn rss_is_read_from_proc() {
        assert!(rss_bytes().is_some_and(|b| b > 0));
    }
}
