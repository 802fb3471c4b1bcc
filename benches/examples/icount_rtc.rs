//! Deterministic cost of the RTP-mode path through two connected `Rtc`, for instruction
//! counting under valgrind's callgrind (this VM has no hardware counters and its timing
//! noise is ±15–30 %, instruction counts repeat exactly):
//!
//! ```sh
//! cargo build --release -p benches --example icount_rtc
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     --toggle-collect='*measured*' target/release/examples/icount_rtc 2000
//! callgrind_annotate /tmp/cg.out | head -n 30   # "PROGRAM TOTALS" / iterations
//! ```
//!
//! One iteration = one 1100-byte RTP packet written on A's send stream (header,
//! extensions, SRTP protect), carried to B (SRTP unprotect, parse, feedback
//! bookkeeping, `Event::RtpPacket`) plus whatever either side answers. Only the calls
//! inside `measured` are collected, so the handshake is excluded. It and the set-up it
//! uses (`benches::pair`) use `rtc-core`'s public API only, so the two files build on
//! older revisions for before/after comparisons.

use std::time::Instant;

use benches::pair::{A, B, addr, connected, pump, write};
use rtc_core::Rtc;
use rtc_core::media::Mid;
use rtc_core::sdp::Codec;

#[inline(never)]
fn measured(a: &mut Rtc, b: &mut Rtc, mid: Mid, now: Instant, iterations: u64) -> usize {
    let pt = a
        .media_info(mid)
        .and_then(|m| m.pt_for(&Codec::Vp8))
        .expect("VP8 negotiated");
    let payload = [0x5au8; 1100];
    let mut scratch = Vec::with_capacity(2048);
    let mut received = 0;
    for seq in 1..=iterations {
        write(a, mid, pt, seq, now, &payload);
        pump(a, b, addr(A), addr(B), now, &mut scratch);
        received += pump(b, a, addr(B), addr(A), now, &mut scratch);
    }
    received
}

fn main() {
    let iterations: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (mut a, mut b, mid, now) = connected(false);
    let received = measured(&mut a, &mut b, mid, now, iterations);
    assert_eq!(received as u64, iterations, "every packet delivered");
    println!("{iterations} packets written and received");
}
