//! Engine-side forwarding latency in fixed buckets: per forwarded packet, from the
//! receive completion of its batch (the iteration's one clock read, taken at its first
//! datagram) to the submission of its send (after the backend's flush: in the middle of
//! the drain each `submit_every` datagrams, [`Shard::submit_part`], and at the end of
//! the iteration). One clock read per submission with forwarded packets, a bucket
//! increment per submission, no allocation.

use std::time::Instant;

use control::LatencyBuckets;

use super::{Shard, nanos};
use crate::io::IoBackend;

/// Counts per bucket of [`LatencyBuckets::log2_linear`].
pub(super) struct ForwardLatency {
    counts: [u64; LatencyBuckets::LOG2_LINEAR_LEN],
}

impl ForwardLatency {
    pub(super) fn new() -> ForwardLatency {
        ForwardLatency {
            counts: [0; LatencyBuckets::LOG2_LINEAR_LEN],
        }
    }

    /// Books `n` packets that took `ns` nanoseconds.
    pub(super) fn record_n(&mut self, ns: u64, n: u64) {
        let i = LatencyBuckets::log2_linear_index(ns);
        // `log2_linear_index` is below `LOG2_LINEAR_LEN`, the array's length.
        if let Some(c) = self.counts.get_mut(i) {
            *c += n;
        }
    }

    /// A snapshot for the stats (allocates; not on the packet path).
    pub(super) fn buckets(&self) -> LatencyBuckets {
        LatencyBuckets::log2_linear(&self.counts)
    }
}

impl Shard {
    /// Submits the `queued` datagrams queued so far in this iteration's drain and books
    /// as many of the iteration's local forwards (from `fwd_from`) as went out with
    /// them. One clock read per submission.
    pub(super) fn submit_part(&mut self, queued: u64, backend: &mut dyn IoBackend) {
        if let Err(e) = backend.flush() {
            tracing::warn!(shard = self.ctx.index, error = %e, "backend flush failed");
        }
        let n = queued.min(self.local_fwd);
        if n == 0 {
            return;
        }
        let sent = Instant::now();
        let ns = nanos(sent.saturating_duration_since(self.fwd_from));
        self.fwd_latency.record_n(ns, n);
        let _ = self.latency_ns.record_n(ns, n);
        self.local_fwd -= n;
    }

    /// After the flush: books this iteration's forwarded packets, local ones from
    /// `received` (the iteration's receive completion), those from other shards from
    /// their batch's receive time there. Clears both tallies.
    pub(super) fn record_forward_latency(&mut self, received: Instant) {
        if self.local_fwd == 0 && self.remote_fwd.is_empty() {
            return;
        }
        let sent = Instant::now();
        let ns = |at: Instant| {
            u64::try_from(sent.saturating_duration_since(at).as_nanos()).unwrap_or(u64::MAX)
        };
        if self.local_fwd > 0 {
            self.fwd_latency.record_n(ns(received), self.local_fwd);
            self.local_fwd = 0;
        }
        for (at, n) in self.remote_fwd.drain(..) {
            self.fwd_latency.record_n(ns(at), n);
        }
    }
}
