//! `rtc-engine --metrics`: a Prometheus scraper's view of a 1 → 10 forward.
//!
//! The daemon runs with two shards and `--metrics 127.0.0.1:0`; `rtc-loadgen` drives one
//! publisher (video and audio) and ten subscribers through the control socket. The
//! endpoint is scraped before, during and after the run; each scrape is parsed by a
//! Prometheus text parser (`prometheus-parse`) and the counters must move as the load
//! generator's report says.

mod browser_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use browser_common::{Reap, rtc_engine};
use prometheus_parse::{Sample, Scrape, Value};
use tools::loadgen::Report;

const SUBSCRIBERS: u64 = 10;

/// One scrape, parsed.
struct Metrics {
    samples: Vec<Sample>,
}

/// One plain HTTP/1.1 request; the response read to the end (`Connection: close`).
fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    // Generous: a scrape asks every shard, on a machine busy with the load generator.
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    raw
}

/// `GET /metrics`, parsed.
fn scrape(addr: SocketAddr) -> Metrics {
    let raw = request(addr, "GET", "/metrics");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    assert!(!scrape.samples.is_empty(), "{body}");
    Metrics {
        samples: scrape.samples,
    }
}

impl Metrics {
    /// Every sample of `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the counter, gauge or untyped samples of `name` (over shards).
    fn sum(&self, name: &str) -> f64 {
        self.sum_where(name, &[])
    }

    fn sum_where(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut found = false;
        let total = self
            .matching(name, labels)
            .map(|s| {
                found = true;
                match s.value {
                    Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                    ref other => panic!("{name} is not a plain value: {other:?}"),
                }
            })
            .sum();
        assert!(found, "no sample {name} {labels:?}");
        total
    }

    /// A histogram's buckets summed over shards: upper bound -> cumulative count.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let mut by_bound: Vec<(f64, f64)> = Vec::new();
        for s in self.matching(name, &[]) {
            let Value::Histogram(ref hs) = s.value else {
                panic!("{name} is not a histogram: {:?}", s.value);
            };
            for h in hs {
                match by_bound.iter_mut().find(|(b, _)| *b == h.less_than) {
                    Some((_, c)) => *c += h.count,
                    None => by_bound.push((h.less_than, h.count)),
                }
            }
        }
        assert!(!by_bound.is_empty(), "no histogram {name}");
        by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
        by_bound
    }

    fn shards(&self) -> Vec<String> {
        self.matching("rtc_shard_sessions", &[])
            .filter_map(|s| s.labels.get("shard").map(str::to_owned))
            .collect()
    }
}

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("metrics-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn scrapes_during_a_one_to_ten_forward_move_with_the_traffic() {
    let dir = temp_dir();
    let socket = dir.join("control.sock");
    let mut child = Command::new(rtc_engine())
        .args(["--shards", "2", "--pin", "false", "--stats-interval", "0"])
        .args(["--metrics", "127.0.0.1:0", "--control-socket"])
        .arg(&socket)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rtc-engine");
    let stdout = child.stdout.take().expect("piped stdout");
    let _reap = Reap(child);
    // The log says where the endpoint is (port 0 asked for) and when the control socket
    // is up; the rest of the log is passed through for a failing run.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("rtc-engine: {line}");
            let _ = tx.send(line);
        }
    });
    let mut addr: Option<SocketAddr> = None;
    let mut control_ready = false;
    // Startup is quick; 60 s only bounds a hung daemon on a very busy machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    while addr.is_none() || !control_ready {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("rtc-engine logs its endpoints");
        if let Some(rest) = line.split("metrics endpoint ready on http://").nth(1) {
            let a = rest.split("/metrics").next().unwrap_or_default();
            addr = Some(a.parse().expect("a socket address in the log line"));
        }
        control_ready |= line.contains("control socket ready");
    }
    // `while` above ends only with an address.
    let addr = addr.expect("metrics address");

    // Only GET and HEAD of /metrics are served.
    assert!(request(addr, "GET", "/").starts_with("HTTP/1.1 404"));
    assert!(request(addr, "POST", "/metrics").starts_with("HTTP/1.1 405"));
    let head = request(addr, "HEAD", "/metrics");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );

    let before = scrape(addr);
    assert_eq!(before.sum("rtc_engine_up"), 1.0);
    assert_eq!(before.shards().len(), 2, "one series per shard");
    assert_eq!(before.sum("rtc_shard_healthy"), 2.0);
    assert_eq!(before.sum("rtc_shard_sessions"), 0.0);
    assert_eq!(before.sum("rtc_shard_legs"), 0.0);
    assert_eq!(before.sum("rtc_shard_forwarded_packets_total"), 0.0);
    assert_eq!(before.sum("rtc_shard_handshakes_total"), 0.0);
    assert!(before.sum("process_resident_memory_bytes") > 0.0);

    // One publisher, ten subscribers, through the control socket.
    let loadgen = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_rtc-loadgen"))
                .arg("--control")
                .arg(&socket)
                .args(["--rooms", "1", "-n", "1", "-m", &SUBSCRIBERS.to_string()])
                .args(["--duration", "4", "--ramp", "0", "--video-kbps", "300"])
                .args(["--json", "-q"])
                .output()
                .expect("run rtc-loadgen")
        })
    };
    // During the run: every session is live and forwarding (event-driven: scrape until
    // the traffic shows, bounded by a deadline far above the connect time).
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        let m = scrape(addr);
        if m.sum("rtc_shard_sessions") == (SUBSCRIBERS + 1) as f64
            && m.sum("rtc_shard_forwarded_packets_total") > 0.0
        {
            break m;
        }
        assert!(
            Instant::now() < deadline && !loadgen.is_finished(),
            "the forward never showed in the metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = loadgen.join().expect("loadgen thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_str(&stdout).expect("JSON report");
    let peers = SUBSCRIBERS + 1;
    assert_eq!(report.peers.connected, peers, "{}", report.to_text());
    let after = scrape(addr);

    // Live state while it ran.
    assert!(during.sum("rtc_engine_rooms") >= 1.0);
    assert_eq!(
        during.sum("rtc_shard_legs"),
        report.received.checks.streams_expected as f64,
        "one leg per subscribed track"
    );
    assert!(during.sum("rtc_shard_routes") >= 1.0);
    // And after: every session closed by the load generator.
    assert_eq!(after.sum("rtc_shard_sessions"), 0.0);
    assert_eq!(after.sum("rtc_shard_legs"), 0.0);

    let delta = |name: &str| after.sum(name) - before.sum(name);
    let sent = (report.sent.video_packets + report.sent.audio_packets) as f64;
    let forwarded = delta("rtc_shard_forwarded_packets_total");
    // Every packet a subscriber got was forwarded, and nothing was forwarded more often
    // than once per subscriber.
    assert!(
        forwarded >= report.received.packets as f64 && forwarded <= SUBSCRIBERS as f64 * sent,
        "forwarded {forwarded}, received {}, sent {sent}",
        report.received.packets
    );
    assert!(
        forwarded > during.sum("rtc_shard_forwarded_packets_total"),
        "still forwarding after the scrape during the run"
    );
    // Part of the forwarded packets left from their send buffer at once, and never
    // more than were forwarded.
    let in_place = delta("rtc_shard_forwarded_in_place_packets_total");
    assert!(
        in_place > 0.0 && in_place <= forwarded,
        "in place {in_place} of {forwarded}"
    );
    // The shards received at least the publisher's RTP and sent at least the forwarded
    // copies (plus STUN, DTLS, RTCP both ways).
    assert!(delta("rtc_shard_received_packets_total") >= sent);
    assert!(delta("rtc_shard_received_bytes_total") >= report.sent.payload_bytes as f64);
    assert!(delta("rtc_shard_sent_packets_total") >= forwarded);
    assert!(delta("rtc_shard_sent_bytes_total") >= report.received.payload_bytes as f64);

    // Handshakes: every peer connected once, none failed.
    assert_eq!(delta("rtc_shard_handshakes_total"), peers as f64);
    assert_eq!(delta("rtc_shard_handshake_failures_total"), 0.0);
    let hs = after.buckets("rtc_shard_handshake_duration_seconds");
    assert_eq!(hs.last().map(|b| b.0), Some(f64::INFINITY));
    assert_eq!(hs.last().map(|b| b.1), Some(peers as f64));
    assert_eq!(
        after.sum("rtc_shard_handshake_duration_seconds_count"),
        peers as f64
    );

    // Forwarding latency: recorded per forwarded packet; buckets are cumulative.
    let fl = after.buckets("rtc_shard_forward_latency_seconds");
    assert!(fl.windows(2).all(|w| w[0].1 <= w[1].1), "{fl:?}");
    let fl_count = after.sum("rtc_shard_forward_latency_seconds_count");
    assert_eq!(fl.last().map(|b| b.1), Some(fl_count));
    assert!(fl_count > 0.0 && fl_count <= after.sum("rtc_shard_forwarded_packets_total"));

    // Batches: every datagram received is in exactly one received buffer, and every
    // send message carried at least one datagram.
    assert_eq!(
        delta("rtc_shard_receive_batch_datagrams_sum"),
        delta("rtc_shard_received_packets_total"),
    );
    let msgs = delta("rtc_shard_send_batch_datagrams_count");
    let sent_datagrams = delta("rtc_shard_send_batch_datagrams_sum");
    assert!(
        msgs > 0.0 && sent_datagrams >= msgs,
        "{msgs} {sent_datagrams}"
    );
    assert!(sent_datagrams <= delta("rtc_shard_sent_packets_total"));

    // io_uring counters move with the backend that runs (zero on the portable one).
    let mut backends: HashMap<String, String> = HashMap::new();
    for s in after.matching("rtc_shard_info", &[]) {
        if let (Some(sh), Some(b)) = (s.labels.get("shard"), s.labels.get("backend")) {
            backends.insert(sh.to_owned(), b.to_owned());
        }
    }
    assert_eq!(backends.len(), 2);
    for (shard, backend) in &backends {
        let l = [("shard", shard.as_str())];
        let sqes = after.sum_where("rtc_shard_uring_submissions_total", &l);
        let cqes = after.sum_where("rtc_shard_uring_completions_total", &l);
        if backend == "io_uring" {
            assert!(sqes > 0.0 && cqes > 0.0, "shard {shard}: {sqes} {cqes}");
        } else {
            assert_eq!((sqes, cqes), (0.0, 0.0), "shard {shard} runs {backend}");
        }
    }
    // Every drop reason is a series of every shard, and the CPU time moved.
    for reason in ["unknown_source", "srtp_auth", "send_would_block"] {
        assert_eq!(
            after
                .matching("rtc_shard_dropped_packets_total", &[("reason", reason)])
                .count(),
            2,
            "{reason}"
        );
    }
    assert!(delta("rtc_shard_cpu_seconds_total") > 0.0);
    assert!(after.sum("rtc_engine_uptime_seconds") > before.sum("rtc_engine_uptime_seconds"));
    // The dashboard in deploy/ uses only metrics the endpoint serves.
    for name in dashboard_metrics() {
        let base = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(
            after
                .samples
                .iter()
                .any(|s| s.metric == name || s.metric == base),
            "deploy/dashboards/rtc-engine.json uses {name}, which rtc-engine does not serve"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The metric names the Grafana dashboard's queries use (`rtc_*`, `process_*`).
fn dashboard_metrics() -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(include_str!("../../deploy/dashboards/rtc-engine.json"))
            .expect("dashboard JSON");
    let mut exprs = Vec::new();
    for p in json["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    let mut names: Vec<String> = exprs
        .iter()
        .flat_map(|e| {
            e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("rtc_") || w.starts_with("process_"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 15, "{names:?}");
    names
}
