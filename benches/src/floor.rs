//! The floor: a raw UDP reflector on the engine's I/O backend, no WebRTC.
//!
//! Three parties, two processes:
//!
//! * `rtc-bench floor-reflector` ([`run_reflector`]) binds one socket, learns receivers
//!   from `J` (join) datagrams (answering `A`), and sends every `D` (data) datagram to
//!   each joined receiver, batched exactly like the engine (one `poll`, copies queued
//!   into the backend's GSO batches, one `flush`).
//! * `rtc-bench floor-load` ([`run_load`]) runs a sender thread (GSO batches of
//!   datagrams carrying a sequence number and send time) and a receiver thread owning
//!   `K` sockets on one backend (GRO). By default the sender is closed-loop: it keeps at
//!   most `window` datagrams in flight (counted from deliveries), so the run finds the
//!   highest rate this machine sustains without overrunning socket buffers.
//!
//! The harness measures the reflector's CPU from `/proc` like the engine's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use engine::io::{BackendPreference, IoConfig, open_backend};
use serde::{Deserialize, Serialize};

use crate::BenchError;

/// Data datagram tag.
const TAG_DATA: u8 = b'D';
/// Join request tag (receiver → reflector).
const TAG_JOIN: u8 = b'J';
/// Join acknowledgement tag (reflector → receiver).
const TAG_ACK: u8 = b'A';
/// Datagrams the reflector holds between a poll and its flush.
const SCRATCH_DATAGRAMS: usize = 4096;
/// Largest datagram the reflector copies.
const SCRATCH_SLOT: usize = 2048;
/// Datagrams fanned out per flush (one GSO batch per receiver).
const CHUNK: usize = 64;

/// Parses a backend name (`auto`, `io-uring`, `portable`).
pub fn backend_pref(name: &str) -> Result<BackendPreference, BenchError> {
    match name {
        "auto" => Ok(BackendPreference::Auto),
        "io-uring" | "io_uring" => Ok(BackendPreference::IoUring),
        "portable" => Ok(BackendPreference::Portable),
        other => Err(BenchError::Measure(format!("unknown backend {other:?}"))),
    }
}

fn loopback_cfg(sockets: usize, send_batches: usize) -> IoConfig {
    IoConfig {
        bind: vec![SocketAddr::from(([127, 0, 0, 1], 0)); sockets],
        send_batches,
        ..IoConfig::default()
    }
}

/// How long the reflector holds fewer than its `batch` datagrams before it sends them
/// anyway (so that a closed loop with a small window never stalls).
const BATCH_HOLD: Duration = Duration::from_millis(2);

/// Runs the reflector until `max` elapses (the harness normally kills it first).
/// `ready` gets the bound address once the socket is open.
///
/// `batch`: `None` sends whatever one poll brought, in chunks of up to 64 datagrams per
/// receiver (one GSO batch each). `Some(b)` is a fixed batching: the reflector holds
/// datagrams until it has `b` of them (or the oldest waited [`BATCH_HOLD`]) and sends
/// each receiver exactly `b` per GSO batch, so that its cost per datagram is measured
/// at a given batching (the engine's, for the saturation report) rather than at
/// whatever the timing of a run gave.
pub fn run_reflector(
    pref: BackendPreference,
    max: Duration,
    batch: Option<usize>,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), BenchError> {
    let chunk = batch.map_or(CHUNK, |b| b.clamp(1, CHUNK));
    let mut be = open_backend(pref, &loopback_cfg(1, 1024))
        .map_err(|e| BenchError::io("reflector backend", e))?;
    let addr = *be
        .local_addrs()
        .first()
        .ok_or_else(|| BenchError::Measure("reflector: no socket".into()))?;
    ready(addr);
    let mut receivers: Vec<SocketAddr> = Vec::new();
    let mut joins: Vec<SocketAddr> = Vec::new();
    let mut scratch = vec![0u8; SCRATCH_DATAGRAMS * SCRATCH_SLOT];
    let mut lens: Vec<usize> = Vec::with_capacity(SCRATCH_DATAGRAMS);
    let end = Instant::now() + max;
    // When the oldest datagram still held arrived (fixed batching only).
    let mut held_since: Option<Instant> = None;
    while Instant::now() < end {
        let wait = if held_since.is_some() {
            Duration::from_micros(500)
        } else {
            Duration::from_millis(100)
        };
        be.poll(Some(wait), &mut |r| match r.data.first() {
            Some(&TAG_DATA) => {
                let n = lens.len();
                let len = r.data.len().min(SCRATCH_SLOT);
                if n < SCRATCH_DATAGRAMS
                    && let (Some(dst), Some(src)) = (
                        scratch.get_mut(n * SCRATCH_SLOT..n * SCRATCH_SLOT + len),
                        r.data.get(..len),
                    )
                {
                    dst.copy_from_slice(src);
                    lens.push(len);
                }
            }
            Some(&TAG_JOIN) => joins.push(r.source),
            _ => {}
        })
        .map_err(|e| BenchError::io("reflector poll", e))?;
        for j in joins.drain(..) {
            if !receivers.contains(&j) {
                receivers.push(j);
            }
            be.queue_send(0, j, &[TAG_ACK]);
        }
        // With a fixed batching, only whole batches leave, unless the oldest held
        // datagram waited long enough; the rest stays (moved to the front).
        let now = Instant::now();
        let ready_n = match batch {
            None => lens.len(),
            Some(_) if lens.is_empty() => 0,
            Some(_) => {
                let since = *held_since.get_or_insert(now);
                if now.duration_since(since) >= BATCH_HOLD {
                    lens.len()
                } else {
                    lens.len() / chunk * chunk
                }
            }
        };
        for (c, part) in lens.get(..ready_n).unwrap_or(&[]).chunks(chunk).enumerate() {
            for dest in &receivers {
                for (i, &len) in part.iter().enumerate() {
                    let at = (c * chunk + i) * SCRATCH_SLOT;
                    if let Some(d) = scratch.get(at..at + len) {
                        be.queue_send(0, *dest, d);
                    }
                }
            }
            // The flush also reaps the sends' completions, so the next chunk finds free
            // batches (a poll here would take, and lose, datagrams that arrived).
            be.flush()
                .map_err(|e| BenchError::io("reflector flush", e))?;
        }
        let rest = lens.len() - ready_n;
        if rest > 0 && ready_n > 0 {
            scratch.copy_within(ready_n * SCRATCH_SLOT..lens.len() * SCRATCH_SLOT, 0);
            lens.copy_within(ready_n.., 0);
        }
        lens.truncate(rest);
        if rest == 0 {
            held_since = None;
        } else if ready_n > 0 {
            held_since = Some(now);
        }
        be.flush()
            .map_err(|e| BenchError::io("reflector flush", e))?;
    }
    Ok(())
}

/// Settings of the floor's load side.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The reflector.
    pub reflector: SocketAddr,
    /// Receivers (fan-out per datagram).
    pub fanout: usize,
    /// Datagram size, bytes (at least 17).
    pub size: usize,
    /// Seconds before the measurement window.
    pub warmup: Duration,
    /// Measurement window.
    pub duration: Duration,
    /// Datagrams per second sent (0: closed loop, as fast as deliveries allow).
    pub rate: u64,
    /// Closed loop: datagrams in flight at most.
    pub window: u64,
    /// I/O backend.
    pub backend: BackendPreference,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
}

impl From<&tools::loadgen::Percentiles> for LatencyMs {
    /// The load generator's latency percentiles (milliseconds), as a report carries them.
    fn from(p: &tools::loadgen::Percentiles) -> Self {
        LatencyMs {
            count: p.count,
            p50: p.p50,
            p99: p.p99,
            p999: p.p999,
        }
    }
}

/// What `floor-load` prints (one JSON line) at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Receivers.
    pub fanout: usize,
    /// Seconds of the measurement window.
    pub seconds: f64,
    /// Datagrams sent by the sender in the window.
    pub sent: u64,
    /// Datagrams delivered to receivers in the window (each copy counts).
    pub delivered: u64,
    /// `1 - delivered / (sent × fanout)` over the whole run (after a short drain).
    pub loss: f64,
    /// Send-to-receive latency over the window.
    pub latency_ms: LatencyMs,
}

#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    delivered: AtomicU64,
    joined: AtomicBool,
    steady: AtomicBool,
    stop_send: AtomicBool,
    stop_recv: AtomicBool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn receiver(
    cfg: &LoadConfig,
    epoch: Instant,
    sh: &Shared,
) -> Result<hdrhistogram::Histogram<u64>, BenchError> {
    let mut be = open_backend(cfg.backend, &loopback_cfg(cfg.fanout, cfg.fanout.max(16)))
        .map_err(|e| BenchError::io("receiver backend", e))?;
    // Microseconds, 1 µs .. 60 s.
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .map_err(|e| BenchError::Measure(format!("histogram: {e}")))?;
    let mut acked = vec![false; cfg.fanout];
    let join_deadline = Instant::now() + Duration::from_secs(10);
    let mut next_join = Instant::now();
    while acked.iter().any(|a| !a) {
        let now = Instant::now();
        if now >= join_deadline {
            return Err(BenchError::Measure(
                "floor: the reflector did not acknowledge every receiver".into(),
            ));
        }
        if now >= next_join {
            for (i, _) in acked.iter().enumerate().filter(|(_, a)| !**a) {
                be.queue_send(i, cfg.reflector, &[TAG_JOIN]);
            }
            be.flush().map_err(|e| BenchError::io("join flush", e))?;
            next_join = now + Duration::from_millis(200);
        }
        be.poll(Some(Duration::from_millis(20)), &mut |r| {
            if r.data.first() == Some(&TAG_ACK)
                && let Some(a) = acked.get_mut(r.socket)
            {
                *a = true;
            }
        })
        .map_err(|e| BenchError::io("receiver poll", e))?;
    }
    sh.joined.store(true, Ordering::Release);
    let mut steady = false;
    let mut delivered = 0u64;
    while !sh.stop_recv.load(Ordering::Acquire) {
        if !steady && sh.steady.load(Ordering::Acquire) {
            steady = true;
            hist.reset();
        }
        be.poll(Some(Duration::from_millis(20)), &mut |r| {
            if r.data.first() == Some(&TAG_DATA)
                && let Some(t) = r.data.get(9..17)
            {
                delivered += 1;
                let mut b = [0u8; 8];
                b.copy_from_slice(t);
                let sent = u64::from_be_bytes(b);
                let now = nanos(epoch.elapsed());
                hist.saturating_record((now.saturating_sub(sent) / 1000).max(1));
            }
        })
        .map_err(|e| BenchError::io("receiver poll", e))?;
        sh.delivered.store(delivered, Ordering::Release);
    }
    Ok(hist)
}

fn sender(cfg: &LoadConfig, epoch: Instant, sh: &Shared) -> Result<(), BenchError> {
    let mut be = open_backend(cfg.backend, &loopback_cfg(1, 64))
        .map_err(|e| BenchError::io("sender backend", e))?;
    let mut buf = vec![0u8; cfg.size.max(17)];
    if let Some(b) = buf.first_mut() {
        *b = TAG_DATA;
    }
    let k = cfg.fanout.max(1) as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut written_off = 0u64;
    let mut last_delivered = 0u64;
    let mut last_progress = Instant::now();
    while !sh.stop_send.load(Ordering::Acquire) {
        be.poll(Some(Duration::ZERO), &mut |_| {})
            .map_err(|e| BenchError::io("sender poll", e))?;
        let now = Instant::now();
        let want = if cfg.rate == 0 {
            let d = sh.delivered.load(Ordering::Acquire) / k;
            if d != last_delivered {
                last_delivered = d;
                last_progress = now;
            }
            let in_flight = sent.saturating_sub(d + written_off);
            if in_flight >= cfg.window
                && now.duration_since(last_progress) > Duration::from_millis(2)
            {
                // Nothing arrived for a while: what is in flight was lost.
                written_off += in_flight;
                last_progress = now;
            }
            cfg.window
                .saturating_sub(sent.saturating_sub(d + written_off))
        } else {
            let due = (now.duration_since(start).as_secs_f64() * cfg.rate as f64) as u64;
            due.saturating_sub(sent)
        };
        let n = want.min(64);
        if n == 0 {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        for _ in 0..n {
            let t = nanos(epoch.elapsed());
            if let Some(h) = buf.get_mut(1..17) {
                let (s, ts) = h.split_at_mut(8);
                s.copy_from_slice(&sent.to_be_bytes());
                ts.copy_from_slice(&t.to_be_bytes());
            }
            if be.queue_send(0, cfg.reflector, &buf) {
                sent += 1;
            }
        }
        be.flush().map_err(|e| BenchError::io("sender flush", e))?;
        sh.sent.store(sent, Ordering::Release);
    }
    Ok(())
}

/// Runs the load side; `mark` is called with `"STEADY"` when the measurement window
/// opens and with `"END"` when it closes.
pub fn run_load(cfg: &LoadConfig, mark: &mut dyn FnMut(&str)) -> Result<LoadReport, BenchError> {
    let epoch = Instant::now();
    let sh = Arc::new(Shared::default());
    let (rcfg, rsh) = (cfg.clone(), sh.clone());
    let recv = std::thread::spawn(move || receiver(&rcfg, epoch, &rsh));
    let until = Instant::now() + Duration::from_secs(12);
    while !sh.joined.load(Ordering::Acquire) {
        if recv.is_finished() || Instant::now() > until {
            sh.stop_recv.store(true, Ordering::Release);
            return match recv.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(BenchError::Measure("floor: receivers did not join".into())),
            };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (scfg, ssh) = (cfg.clone(), sh.clone());
    let send = std::thread::spawn(move || sender(&scfg, epoch, &ssh));
    std::thread::sleep(cfg.warmup);
    let (s0, d0, t0) = (
        sh.sent.load(Ordering::Acquire),
        sh.delivered.load(Ordering::Acquire),
        Instant::now(),
    );
    sh.steady.store(true, Ordering::Release);
    mark("STEADY");
    std::thread::sleep(cfg.duration);
    let (s1, d1, secs) = (
        sh.sent.load(Ordering::Acquire),
        sh.delivered.load(Ordering::Acquire),
        t0.elapsed().as_secs_f64(),
    );
    mark("END");
    sh.stop_send.store(true, Ordering::Release);
    let send_res = send.join();
    std::thread::sleep(Duration::from_millis(200));
    sh.stop_recv.store(true, Ordering::Release);
    let hist = match recv.join() {
        Ok(r) => r?,
        Err(_) => return Err(BenchError::Measure("floor: receiver panicked".into())),
    };
    match send_res {
        Ok(r) => r?,
        Err(_) => return Err(BenchError::Measure("floor: sender panicked".into())),
    }
    let total_sent = sh.sent.load(Ordering::Acquire);
    let total_delivered = sh.delivered.load(Ordering::Acquire);
    let expected = total_sent.saturating_mul(cfg.fanout as u64);
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Ok(LoadReport {
        fanout: cfg.fanout,
        seconds: secs,
        sent: s1 - s0,
        delivered: d1 - d0,
        loss: if expected == 0 {
            0.0
        } else {
            expected.saturating_sub(total_delivered) as f64 / expected as f64
        },
        latency_ms: LatencyMs {
            count: hist.len(),
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reflects 2,000 datagrams/s to three receivers in process with `batch`.
    fn round_trip(batch: Option<usize>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let refl = std::thread::spawn(move || {
            run_reflector(
                BackendPreference::Portable,
                Duration::from_secs(3),
                batch,
                |a| {
                    let _ = tx.send(a);
                },
            )
        });
        let addr = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let cfg = LoadConfig {
            reflector: addr,
            fanout: 3,
            size: 1200,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
            rate: 2000,
            window: 256,
            backend: BackendPreference::Portable,
        };
        let mut marks = Vec::new();
        let r = run_load(&cfg, &mut |m| marks.push(m.to_owned())).unwrap();
        assert_eq!(marks, ["STEADY", "END"]);
        assert_eq!(r.fanout, 3);
        assert!(r.sent > 100, "{r:?}");
        // Every datagram reaches the three receivers (a little slack for the window edges).
        assert!(r.delivered >= r.sent * 3 - 3 * 64, "{batch:?}: {r:?}");
        assert!(r.latency_ms.count > 0 && r.latency_ms.p50 > 0.0);
        refl.join().unwrap().unwrap();
    }

    #[test]
    fn in_process_round_trip() {
        round_trip(None);
    }

    #[test]
    fn in_process_round_trip_with_a_fixed_batch_loses_nothing() {
        // Batches of 4 (held at most 2 ms at 2,000 datagrams/s): every datagram still
        // reaches every receiver.
        round_trip(Some(4));
    }
}
