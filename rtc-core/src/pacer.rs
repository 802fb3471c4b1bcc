//! Send-side pacing and probing, Sans-I/O; each priority class's queue allocates only as
//! it first reaches a new depth (doubling up to its capacity), nothing once grown.
//!
//! A [`Pacer`] decides *when* queued packets may leave. It does not own packet
//! bytes: the caller enqueues an opaque handle and a size per packet, and later
//! learns from [`Pacer::poll`] which handle to send now. Packets drain through a
//! leaky bucket at the pacing rate (a multiple, by default 2.5×, of the target rate
//! set with [`Pacer::set_target`]) with a small burst allowance, highest priority
//! class first: audio, then retransmissions, then video, then padding.
//!
//! Probing: [`Pacer::start_probe`] asks for a sent rate of `goal_bps` for a while;
//! [`Pacer::padding_wanted`] then says how many bytes of padding (or redundant
//! retransmissions) the caller should generate and enqueue as
//! [`PacketClass::Padding`] so that the sent rate reaches the goal when media alone
//! does not.
//!
//! The queue is bounded twice: each class holds at most the capacity given at
//! construction ([`Pacer::enqueue`] refuses more), and [`Pacer::poll_dropped`]
//! discards the oldest low-priority entries (padding, then video, then
//! retransmissions, audio last) while the queue would take longer than the
//! configured time budget to drain.
//!
//! Typical use, each time the caller wakes up (a packet was produced, or the time
//! from [`Pacer::next_send_time`] came):
//!
//! ```
//! use rtc_core::pacer::{PacketClass, Pacer, PacerConfig};
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut pacer = Pacer::new(PacerConfig::default());
//! pacer.set_target(1_000_000, 2_000_000);
//! pacer.enqueue(PacketClass::Video, 7, 1200, now).unwrap();
//! while let Some((_class, _handle)) = pacer.poll_dropped(now) {
//!     // free the dropped packet's buffer
//! }
//! while let Some((class, handle)) = pacer.poll(now) {
//!     assert_eq!((class, handle), (PacketClass::Video, 7));
//!     // send the packet identified by `handle`
//! }
//! let _wake_at = pacer.next_send_time(now);
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Priority class of a queued packet, highest priority first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// Audio: sent before everything else, dropped last.
    Audio,
    /// Retransmissions (RTX or NACK-driven resends).
    Retransmission,
    /// Video media.
    Video,
    /// Padding or probe packets: sent only when nothing else waits.
    Padding,
}

impl PacketClass {
    /// All classes, highest priority first.
    pub const ALL: [PacketClass; 4] = [
        PacketClass::Audio,
        PacketClass::Retransmission,
        PacketClass::Video,
        PacketClass::Padding,
    ];

    fn index(self) -> usize {
        match self {
            PacketClass::Audio => 0,
            PacketClass::Retransmission => 1,
            PacketClass::Video => 2,
            PacketClass::Padding => 3,
        }
    }
}

/// Order in which entries are discarded when the queue is over its time budget.
const DROP_ORDER: [PacketClass; 4] = [
    PacketClass::Padding,
    PacketClass::Video,
    PacketClass::Retransmission,
    PacketClass::Audio,
];

/// Configuration of a [`Pacer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacerConfig {
    /// Pacing rate as a multiple of the target rate.
    pub multiplier: f64,
    /// Burst allowance: the bucket holds at most this much time at the pacing rate
    /// (and never less than one maximum-size packet, [`PacerConfig::min_burst_bytes`]).
    pub burst: Duration,
    /// Lower bound of the burst allowance in bytes.
    pub min_burst_bytes: usize,
    /// The queue may hold at most this much time at the pacing rate before
    /// [`Pacer::poll_dropped`] discards entries.
    pub queue_budget: Duration,
    /// Capacity of each class's queue, in entries (audio, retransmission, video,
    /// padding).
    pub capacity: [usize; 4],
    /// Pacing rate used before [`Pacer::set_target`] is called (bps).
    pub initial_target_bps: u64,
}

impl Default for PacerConfig {
    fn default() -> Self {
        PacerConfig {
            multiplier: 2.5,
            burst: Duration::from_millis(5),
            min_burst_bytes: 1500,
            queue_budget: Duration::from_secs(2),
            capacity: [128, 512, 1024, 128],
            initial_target_bps: 300_000,
        }
    }
}

/// Why [`Pacer::enqueue`] refused an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacerError {
    /// The class's queue holds as many entries as its capacity.
    #[error("pacer queue for {0:?} is full")]
    QueueFull(PacketClass),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    handle: u64,
    bytes: usize,
    enqueued: Instant,
}

/// A FIFO of at most `capacity` entries. Its storage grows with the deepest queue
/// actually reached (doubling, never past `capacity`) and is kept, so a class never
/// used holds no memory and a steady queue stops allocating once it has grown.
#[derive(Debug, Clone)]
struct Ring {
    capacity: usize,
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// Entries a ring makes room for on its first push.
const RING_INITIAL: usize = 16;

impl Ring {
    fn new(capacity: usize) -> Self {
        Ring {
            capacity,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn push(&mut self, e: Entry) -> bool {
        let len = self.entries.len();
        if len >= self.capacity {
            return false;
        }
        if len == self.entries.capacity() {
            // Double (at least `RING_INITIAL`), but never past `capacity`.
            let more = len.max(RING_INITIAL).min(self.capacity - len); // len < capacity
            self.entries.reserve_exact(more);
        }
        self.entries.push_back(e);
        self.bytes = self.bytes.saturating_add(e.bytes);
        true
    }

    fn front(&self) -> Option<&Entry> {
        self.entries.front()
    }

    fn pop(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e)
    }
}

#[derive(Debug, Clone, Copy)]
struct Probe {
    goal_bps: f64,
    start: Instant,
    end: Instant,
    /// Bytes sent (any class) since the probe started.
    sent: f64,
}

/// Counters of a [`Pacer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// Entries sent, per class (audio, retransmission, video, padding).
    pub sent: [u64; 4],
    /// Bytes sent, per class.
    pub sent_bytes: [u64; 4],
    /// Entries discarded by [`Pacer::poll_dropped`], per class.
    pub dropped: [u64; 4],
    /// Entries refused by [`Pacer::enqueue`] because the class queue was full.
    pub refused: u64,
}

/// Leaky-bucket pacer with four priority classes and probing; see the module
/// documentation.
#[derive(Debug, Clone)]
pub struct Pacer {
    config: PacerConfig,
    queues: [Ring; 4],
    target_bps: f64,
    max_bps: f64,
    /// Bytes that may be sent now; negative while paying off a sent packet.
    budget: f64,
    last: Option<Instant>,
    probe: Option<Probe>,
    stats: PacerStats,
    /// [`Pacer::pacing_bps`] and [`Pacer::burst_bytes`], recomputed when the target
    /// or the probe changes ([`Pacer::refresh`]) rather than on every packet.
    rate_bps: f64,
    burst_cap: f64,
    /// `config.queue_budget` in seconds.
    queue_budget_secs: f64,
}

impl Pacer {
    /// A pacer with `config`. Its only allocations are the queues of the classes, each
    /// grown as it first reaches a new depth. A
    /// multiplier that is not a positive finite number is replaced by the default.
    pub fn new(mut config: PacerConfig) -> Self {
        if !(config.multiplier.is_finite() && config.multiplier > 0.0) {
            config.multiplier = PacerConfig::default().multiplier;
        }
        let [a, r, v, p] = config.capacity;
        let target = config.initial_target_bps as f64;
        let queue_budget_secs = config.queue_budget.as_secs_f64();
        let mut pacer = Pacer {
            config,
            queues: [Ring::new(a), Ring::new(r), Ring::new(v), Ring::new(p)],
            target_bps: target,
            max_bps: f64::INFINITY,
            budget: 0.0,
            last: None,
            probe: None,
            stats: PacerStats::default(),
            rate_bps: 1.0,
            burst_cap: 0.0,
            queue_budget_secs,
        };
        pacer.refresh();
        pacer
    }

    /// Recomputes the pacing rate and the burst allowance (after the target or the
    /// probe changed).
    fn refresh(&mut self) {
        let base = (self.config.multiplier * self.target_bps).max(1.0);
        self.rate_bps = match self.probe {
            Some(p) => base.max(p.goal_bps),
            None => base,
        };
        let b = self.rate_bps / 8.0 * self.config.burst.as_secs_f64();
        self.burst_cap = b.max(self.config.min_burst_bytes as f64);
    }

    /// Sets the target rate (the estimate the encoders follow) and the maximum rate
    /// (the application's cap for this peer; 0 means no cap). The pacing rate is
    /// `multiplier × min(target, max)`.
    pub fn set_target(&mut self, target_bps: u64, max_bps: u64) {
        self.max_bps = if max_bps == 0 {
            f64::INFINITY
        } else {
            max_bps as f64
        };
        self.target_bps = (target_bps as f64).min(self.max_bps);
        self.refresh();
    }

    /// The target rate in force (bps), after the maximum.
    pub fn target_bps(&self) -> u64 {
        self.target_bps as u64 // finite: from a u64
    }

    /// The rate the bucket drains at now (bps): the pacing rate, or the probe goal
    /// while a probe runs and asks for more.
    pub fn pacing_bps(&self) -> f64 {
        self.rate_bps
    }

    /// Counters.
    pub fn stats(&self) -> &PacerStats {
        &self.stats
    }

    /// Entries waiting in `class`'s queue.
    pub fn queued(&self, class: PacketClass) -> usize {
        self.queues[class.index()].len()
    }

    /// Bytes waiting in all queues.
    pub fn queued_bytes(&self) -> usize {
        self.queues
            .iter()
            .fold(0usize, |n, q| n.saturating_add(q.bytes))
    }

    /// How long the queued bytes take to drain at the pacing rate.
    pub fn queue_time(&self) -> Duration {
        secs(self.queued_bytes() as f64 * 8.0 / self.pacing_bps())
    }

    /// How long the bytes queued in `class` and the classes sent before it take to
    /// drain at the pacing rate: the wait of a packet of `class` enqueued now.
    pub fn queue_time_through(&self, class: PacketClass) -> Duration {
        let bytes = self
            .queues
            .iter()
            .take(class.index() + 1)
            .fold(0usize, |n, q| n.saturating_add(q.bytes));
        secs(bytes as f64 * 8.0 / self.pacing_bps())
    }

    fn burst_bytes(&self) -> f64 {
        self.burst_cap
    }

    /// Ends the probe at its end time and refills the bucket up to `now`. Called
    /// several times per packet, mostly with the same `now` or a full bucket: those
    /// cost a few comparisons (no clock arithmetic).
    fn advance(&mut self, now: Instant) {
        if let Some(p) = self.probe
            && now >= p.end
        {
            self.probe = None;
            self.refresh();
        }
        match self.last {
            None => self.last = Some(now),
            Some(last) if now > last => {
                // Refill; an idle bucket never holds more than the burst allowance.
                if self.budget >= self.burst_cap {
                    self.budget = self.burst_cap;
                } else {
                    let dt = (now - last).as_secs_f64();
                    self.budget = (self.budget + self.rate_bps / 8.0 * dt).min(self.burst_cap);
                }
                self.last = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Queues a packet of `bytes` identified by `handle` at `now`. Fails, leaving
    /// the queue as it was, when `class`'s queue is at capacity.
    pub fn enqueue(
        &mut self,
        class: PacketClass,
        handle: u64,
        bytes: usize,
        now: Instant,
    ) -> Result<(), PacerError> {
        self.advance(now);
        let entry = Entry {
            handle,
            bytes,
            enqueued: now,
        };
        if self.queues[class.index()].push(entry) {
            Ok(())
        } else {
            self.stats.refused += 1;
            Err(PacerError::QueueFull(class))
        }
    }

    /// While the queue takes longer than the time budget to drain, discards the
    /// oldest entry of the lowest non-empty class (padding, video, retransmission,
    /// audio last) and returns it so the caller can free it. Call until `None`.
    pub fn poll_dropped(&mut self, now: Instant) -> Option<(PacketClass, u64)> {
        self.advance(now);
        let queued = self.queued_bytes();
        // `queue_time() <= queue_budget`, without building a Duration per call.
        if queued == 0 || queued as f64 * 8.0 / self.rate_bps <= self.queue_budget_secs {
            return None;
        }
        for class in DROP_ORDER {
            if let Some(e) = self.queues[class.index()].pop() {
                self.stats.dropped[class.index()] += 1;
                return Some((class, e.handle));
            }
        }
        None
    }

    /// Sends a packet of `bytes` of `class` at `now` without queueing it, when that is
    /// what [`Pacer::enqueue`] followed by [`Pacer::poll`] would do: nothing of any
    /// class is queued, no probe runs and the bucket is not in debt. The packet is
    /// then counted as sent and spends the bucket, and `true` is returned; `false`
    /// leaves the pacer as it was (but for refilling the bucket to `now`), and the
    /// packet should be enqueued.
    pub fn send_now(&mut self, class: PacketClass, bytes: usize, now: Instant) -> bool {
        if self.queues.iter().any(|q| q.len() != 0) || self.probing(now) {
            return false;
        }
        self.advance(now);
        if self.budget < 0.0 {
            return false;
        }
        self.budget -= bytes as f64;
        let i = class.index();
        self.stats.sent[i] += 1;
        self.stats.sent_bytes[i] += bytes as u64;
        true
    }

    /// The next packet that may be sent at `now`, highest priority first, or `None`
    /// when the queue is empty or the bucket is spent (see
    /// [`Pacer::next_send_time`]). The caller sends it right away.
    pub fn poll(&mut self, now: Instant) -> Option<(PacketClass, u64)> {
        self.advance(now);
        if self.budget < 0.0 {
            return None;
        }
        for class in PacketClass::ALL {
            if let Some(e) = self.queues[class.index()].pop() {
                self.budget -= e.bytes as f64;
                let i = class.index();
                self.stats.sent[i] += 1;
                self.stats.sent_bytes[i] += e.bytes as u64;
                if let Some(p) = self.probe.as_mut() {
                    p.sent += e.bytes as f64;
                }
                return Some((class, e.handle));
            }
        }
        None
    }

    /// The next queued packet, highest priority first, regardless of the bucket
    /// (for sending everything at once when pacing is turned off). It is counted as
    /// sent but does not spend the bucket.
    pub fn flush(&mut self) -> Option<(PacketClass, u64)> {
        for class in PacketClass::ALL {
            if let Some(e) = self.queues[class.index()].pop() {
                let i = class.index();
                self.stats.sent[i] += 1;
                self.stats.sent_bytes[i] += e.bytes as u64;
                return Some((class, e.handle));
            }
        }
        None
    }

    /// When [`Pacer::poll`] will next return a packet, or padding should next be
    /// generated; `None` when there is nothing to do until something is enqueued.
    pub fn next_send_time(&self, now: Instant) -> Option<Instant> {
        let probing = self.probe.is_some_and(|p| now < p.end);
        if self.queues.iter().all(|q| q.entries.is_empty()) {
            // Nothing queued: wake for the next padding while probing.
            return probing.then(|| {
                let p = self.probe.expect("probing implies a probe"); // checked above
                let step = secs(self.config.min_burst_bytes as f64 * 8.0 / p.goal_bps);
                now.checked_add(step.min(Duration::from_millis(5)))
                    .unwrap_or(p.end)
                    .min(p.end)
            });
        }
        // Project the bucket to `now` (as `advance` would) to see how long to wait.
        let rate = self.pacing_bps() / 8.0;
        let elapsed = self
            .last
            .map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        let budget = (self.budget + rate * elapsed).min(self.burst_bytes());
        if budget >= 0.0 {
            return Some(now);
        }
        // At least 1 µs so that the bucket has visibly refilled by then.
        let wait = secs(-budget / rate).max(Duration::from_micros(1));
        Some(
            now.checked_add(wait)
                .unwrap_or(now + Duration::from_secs(1)),
        )
    }

    /// Starts a probe at `now`: for `duration` the sent rate (all classes) should
    /// reach `goal_bps`; [`Pacer::padding_wanted`] says how much padding makes up the
    /// difference. A new probe replaces a running one.
    pub fn start_probe(&mut self, goal_bps: u64, duration: Duration, now: Instant) {
        self.advance(now);
        self.probe = Some(Probe {
            goal_bps: (goal_bps as f64).min(self.max_bps).max(1.0),
            start: now,
            end: now
                .checked_add(duration)
                .unwrap_or(now + Duration::from_secs(60)),
            sent: 0.0,
        });
        self.refresh();
    }

    /// Whether a probe is running at `now`.
    pub fn probing(&self, now: Instant) -> bool {
        self.probe.is_some_and(|p| now < p.end)
    }

    /// Bytes of padding (or redundant retransmissions) to generate and enqueue as
    /// [`PacketClass::Padding`] now so that the probe's sent rate reaches its goal;
    /// `None` when no probe runs or media already fills it. The amount looks ahead
    /// by the burst allowance so that padding is ready when the bucket allows it.
    pub fn padding_wanted(&mut self, now: Instant) -> Option<usize> {
        self.advance(now);
        let p = self.probe?;
        let until = now
            .checked_add(self.config.burst)
            .unwrap_or(p.end)
            .min(p.end);
        let elapsed = until.saturating_duration_since(p.start).as_secs_f64();
        let want = p.goal_bps / 8.0 * elapsed - p.sent - self.queued_bytes() as f64;
        (want >= 1.0).then_some(want as usize) // finite and positive
    }

    /// The age of the oldest entry of `class` at `now`.
    pub fn oldest(&self, class: PacketClass, now: Instant) -> Option<Duration> {
        self.queues[class.index()]
            .front()
            .map(|e| now.saturating_duration_since(e.enqueued))
    }
}

/// `s` seconds as a `Duration`, saturating (and 0 for what is not a positive
/// finite number).
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Runs the pacer event by event from `t0` for `dur`: `produce` may enqueue at
    /// each wake-up; every polled packet is recorded as (time, class, handle, bytes).
    fn drive(
        p: &mut Pacer,
        t0: Instant,
        dur: Duration,
        mut produce: impl FnMut(&mut Pacer, Instant),
        sizes: impl Fn(u64) -> usize,
    ) -> Vec<(Instant, PacketClass, u64, usize)> {
        let mut out = Vec::new();
        let mut now = t0;
        let end = t0 + dur;
        while now < end {
            produce(p, now);
            while p.poll_dropped(now).is_some() {}
            while let Some((c, h)) = p.poll(now) {
                out.push((now, c, h, sizes(h)));
            }
            let next = p.next_send_time(now).unwrap_or(now + us(1000));
            now = next.max(now + us(1)).min(now + us(1000));
        }
        out
    }

    fn rate_bps(sent: &[(Instant, PacketClass, u64, usize)], from: Instant, to: Instant) -> f64 {
        let bytes: usize = sent
            .iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| s.3)
            .sum();
        bytes as f64 * 8.0 / (to - from).as_secs_f64()
    }

    #[test]
    fn drains_at_multiplier_times_target() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(1_000_000, 0);
        // 3 s of backlog at 2.5 Mbit/s: 780 packets of 1200 B, all queued up front.
        for h in 0..780 {
            p.enqueue(PacketClass::Video, h, 1200, t0).unwrap();
        }
        let sent = drive(&mut p, t0, Duration::from_secs(2), |_, _| {}, |_| 1200);
        let r = rate_bps(
            &sent,
            t0 + Duration::from_millis(100),
            t0 + Duration::from_secs(2),
        );
        assert!((r - 2_500_000.0).abs() < 0.05 * 2_500_000.0, "rate {r}");
        // In order.
        assert!(sent.windows(2).all(|w| w[0].2 < w[1].2));
        // The max caps the target: 2.5 × 400 kbit/s.
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(1_000_000, 400_000);
        assert_eq!(p.target_bps(), 400_000);
        for h in 0..500 {
            p.enqueue(PacketClass::Video, h, 1000, t0).unwrap();
        }
        let sent = drive(&mut p, t0, Duration::from_secs(1), |_, _| {}, |_| 1000);
        let r = rate_bps(
            &sent,
            t0 + Duration::from_millis(100),
            t0 + Duration::from_secs(1),
        );
        assert!((r - 1_000_000.0).abs() < 0.05 * 1_000_000.0, "rate {r}");
    }

    #[test]
    fn sending_now_is_what_enqueue_and_poll_would_do() {
        // Two pacers fed the same traffic: one queues every packet and polls, the
        // other sends at once whenever `send_now` allows and queues otherwise. The
        // packets leave at the same instants and the counters agree.
        let t0 = Instant::now();
        let mut queued = Pacer::new(PacerConfig::default());
        let mut direct = Pacer::new(PacerConfig::default());
        queued.set_target(1_000_000, 0);
        direct.set_target(1_000_000, 0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut now = t0;
        for h in 0..400u64 {
            // Bursts of 8 packets every 10 ms: 7.7 Mbit/s, over the 2.5 Mbit/s
            // pacing rate, so the direct pacer must fall back to its queue.
            if h % 8 == 0 {
                now = t0 + us(h / 8 * 10_000);
            }
            queued.enqueue(PacketClass::Video, h, 1200, now).unwrap();
            while let Some((_, x)) = queued.poll(now) {
                a.push((now, x));
            }
            if direct.send_now(PacketClass::Video, 1200, now) {
                b.push((now, h));
            } else {
                direct.enqueue(PacketClass::Video, h, 1200, now).unwrap();
            }
            while let Some((_, x)) = direct.poll(now) {
                b.push((now, x));
            }
            // Both drain their queues between the bursts.
            let mut t = now;
            for _ in 0..9 {
                t += us(1000);
                while let Some((_, x)) = queued.poll(t) {
                    a.push((t, x));
                }
                while let Some((_, x)) = direct.poll(t) {
                    b.push((t, x));
                }
            }
        }
        assert_eq!(a, b);
        assert!(b.len() > 100);
        assert_eq!(queued.stats(), direct.stats());
        // A probe queues: sending at once would skip the probe's accounting order.
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(1_000_000, 0);
        p.start_probe(3_000_000, Duration::from_millis(20), t0);
        assert!(!p.send_now(PacketClass::Video, 1200, t0));
        assert_eq!(p.stats().sent, [0; 4]);
    }

    #[test]
    fn media_below_the_pacing_rate_is_not_delayed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(1_000_000, 0);
        // One 1200 B packet every 12 ms (800 kbit/s): each leaves when enqueued.
        let mut next = t0;
        let mut h = 0;
        let sent = drive(
            &mut p,
            t0,
            Duration::from_secs(1),
            |p, now| {
                while next <= now {
                    p.enqueue(PacketClass::Video, h, 1200, next).unwrap();
                    h += 1;
                    next += Duration::from_millis(12);
                }
            },
            |_| 1200,
        );
        assert!(sent.len() >= 80);
        for (i, s) in sent.iter().enumerate() {
            let produced = t0 + Duration::from_millis(12) * i as u32;
            assert!(s.0 - produced < Duration::from_millis(2), "packet {i} late");
        }
    }

    #[test]
    fn audio_and_retransmissions_go_before_video() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(400_000, 0); // 1 Mbit/s pacing: 1250 B per 10 ms
        for h in 0..10 {
            p.enqueue(PacketClass::Video, h, 1200, t0).unwrap();
        }
        // The burst allowance lets the first packet out at once.
        assert_eq!(p.poll(t0), Some((PacketClass::Video, 0)));
        assert_eq!(p.poll(t0), None);
        let next = p.next_send_time(t0).unwrap();
        assert!(next > t0);
        p.enqueue(PacketClass::Padding, 100, 200, t0).unwrap();
        p.enqueue(PacketClass::Retransmission, 50, 1200, t0)
            .unwrap();
        p.enqueue(PacketClass::Audio, 70, 100, t0).unwrap();
        let mut order = Vec::new();
        let mut now = next;
        while order.len() < 12 {
            while let Some((c, h)) = p.poll(now) {
                order.push((c, h));
            }
            match p.next_send_time(now) {
                Some(t) => now = t.max(now + us(1)),
                None => break,
            }
        }
        assert_eq!(order[0], (PacketClass::Audio, 70));
        assert_eq!(order[1], (PacketClass::Retransmission, 50));
        assert_eq!(order[2], (PacketClass::Video, 1));
        assert_eq!(order[10], (PacketClass::Video, 9));
        assert_eq!(order[11], (PacketClass::Padding, 100));
        assert_eq!(p.stats().sent, [1, 1, 10, 1]);
        assert_eq!(p.next_send_time(now), None);
    }

    #[test]
    fn probe_pads_up_to_the_goal() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(500_000, 0);
        // Media at 400 kbit/s (1000 B every 20 ms); probe at 3 Mbit/s for 500 ms.
        p.start_probe(3_000_000, Duration::from_millis(500), t0);
        assert!(p.probing(t0));
        let mut next_media = t0;
        let mut h = 0u64;
        let mut sizes = std::collections::HashMap::new();
        let mut out = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(1) {
            while next_media <= now {
                p.enqueue(PacketClass::Video, h, 1000, now).unwrap();
                sizes.insert(h, 1000);
                h += 1;
                next_media += Duration::from_millis(20);
            }
            while let Some(mut pad) = p.padding_wanted(now) {
                while pad > 0 {
                    let n = pad.min(1200);
                    p.enqueue(PacketClass::Padding, 1_000_000 + h, n, now)
                        .unwrap();
                    sizes.insert(1_000_000 + h, n);
                    h += 1;
                    pad -= n;
                }
            }
            while let Some((c, handle)) = p.poll(now) {
                out.push((now, c, handle, sizes[&handle]));
            }
            let wake = p.next_send_time(now).unwrap_or(next_media);
            now = wake.min(next_media).max(now + us(1));
        }
        let probe = rate_bps(&out, t0, t0 + Duration::from_millis(500));
        assert!(
            (probe - 3_000_000.0).abs() < 0.05 * 3_000_000.0,
            "probe rate {probe}"
        );
        let media: usize = out
            .iter()
            .filter(|s| s.1 == PacketClass::Video)
            .map(|s| s.3)
            .sum();
        assert!(media >= 49 * 1000, "media kept flowing: {media}");
        // After the probe: media only (400 kbit/s), no padding.
        assert!(!p.probing(now));
        assert_eq!(p.padding_wanted(now), None);
        let after = rate_bps(
            &out,
            t0 + Duration::from_millis(600),
            t0 + Duration::from_secs(1),
        );
        assert!(
            (after - 400_000.0).abs() < 0.05 * 400_000.0,
            "after {after}"
        );
        assert!(
            out.iter()
                .filter(|s| s.0 >= t0 + Duration::from_millis(510))
                .all(|s| s.1 == PacketClass::Video)
        );
    }

    #[test]
    fn flush_ignores_the_bucket_and_leaves_it_as_it_was() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(100_000, 0);
        for h in 0..5 {
            p.enqueue(PacketClass::Video, h, 1200, t0).unwrap();
        }
        p.enqueue(PacketClass::Audio, 9, 100, t0).unwrap();
        assert_eq!(p.flush(), Some((PacketClass::Audio, 9)));
        let flushed: Vec<u64> = std::iter::from_fn(|| p.flush()).map(|e| e.1).collect();
        assert_eq!(flushed, vec![0, 1, 2, 3, 4]);
        assert_eq!(p.stats().sent, [1, 0, 5, 0]);
        // The bucket was not spent: the next packet leaves at once, the one after
        // waits for its share (1200 B at 250 kbit/s).
        p.enqueue(PacketClass::Video, 10, 1200, t0).unwrap();
        p.enqueue(PacketClass::Video, 11, 1200, t0).unwrap();
        assert_eq!(p.poll(t0), Some((PacketClass::Video, 10)));
        assert_eq!(p.poll(t0), None);
        assert!(p.next_send_time(t0).unwrap() > t0 + Duration::from_millis(30));
    }

    #[test]
    fn probe_needs_no_padding_when_media_fills_it() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig::default());
        p.set_target(1_000_000, 0);
        p.start_probe(1_000_000, Duration::from_millis(100), t0);
        // 100 ms at 1 Mbit/s = 12_500 B of media already queued.
        for h in 0..11 {
            p.enqueue(PacketClass::Video, h, 1200, t0).unwrap();
        }
        assert_eq!(p.padding_wanted(t0), None);
    }

    #[test]
    fn odd_configuration_and_inputs_do_not_panic() {
        let t0 = Instant::now();
        let mut p = Pacer::new(PacerConfig {
            multiplier: f64::NAN,
            burst: Duration::MAX,
            capacity: [0, 0, 1, 0],
            ..PacerConfig::default()
        });
        p.set_target(0, 0);
        assert!(p.pacing_bps() > 0.0);
        assert_eq!(
            p.enqueue(PacketClass::Audio, 1, 100, t0),
            Err(PacerError::QueueFull(PacketClass::Audio))
        );
        p.enqueue(PacketClass::Video, 2, usize::MAX, t0).unwrap();
        assert_eq!(p.poll(t0), Some((PacketClass::Video, 2)));
        assert!(p.next_send_time(t0).is_none());
        p.start_probe(u64::MAX, Duration::MAX, t0);
        assert!(p.padding_wanted(t0).is_some());
        let _ = p.queue_time();
        let _ = p.poll_dropped(t0);
    }

    #[test]
    fn queue_is_bounded_in_time_and_entries() {
        let t0 = Instant::now();
        let config = PacerConfig {
            queue_budget: Duration::from_millis(100),
            capacity: [4, 4, 64, 4],
            ..PacerConfig::default()
        };
        let mut p = Pacer::new(config);
        p.set_target(400_000, 0); // 1 Mbit/s pacing: 100 ms = 12_500 B
        for h in 0..4 {
            p.enqueue(PacketClass::Audio, 100 + h, 100, t0).unwrap();
        }
        assert_eq!(
            p.enqueue(PacketClass::Audio, 200, 100, t0),
            Err(PacerError::QueueFull(PacketClass::Audio))
        );
        assert_eq!(p.stats().refused, 1);
        for h in 0..20 {
            p.enqueue(PacketClass::Video, h, 1200, t0).unwrap();
        }
        p.enqueue(PacketClass::Padding, 300, 1000, t0).unwrap();
        // 400 + 24_000 + 1000 B > 12_500 B: padding goes first, then the oldest video.
        let mut dropped = Vec::new();
        while let Some(d) = p.poll_dropped(t0) {
            dropped.push(d);
        }
        assert_eq!(dropped[0], (PacketClass::Padding, 300));
        assert!(dropped[1..].iter().all(|d| d.0 == PacketClass::Video));
        let video: Vec<u64> = dropped[1..].iter().map(|d| d.1).collect();
        assert_eq!(video, (0..video.len() as u64).collect::<Vec<_>>());
        assert!(p.queue_time() <= Duration::from_millis(100));
        assert_eq!(p.queued(PacketClass::Audio), 4);
        assert_eq!(p.stats().dropped, [0, 0, video.len() as u64, 1]);
        // Audio alone over budget: dropped only when nothing else is left.
        let mut p = Pacer::new(PacerConfig {
            queue_budget: Duration::from_millis(1),
            ..config
        });
        p.set_target(400_000, 0);
        p.enqueue(PacketClass::Video, 1, 1200, t0).unwrap();
        p.enqueue(PacketClass::Audio, 2, 200, t0).unwrap();
        assert_eq!(p.poll_dropped(t0), Some((PacketClass::Video, 1)));
        assert_eq!(p.poll_dropped(t0), Some((PacketClass::Audio, 2)));
        assert_eq!(p.poll_dropped(t0), None);
    }
}
