#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::sctp::SctpTransport;
use rtc_core::_internal::sctp::dcep::DcepMessage;
use std::time::{Duration, Instant};

/// Wires a DTLS-client and a DTLS-server transport together until connected.
fn connected_pair(now: Instant) -> (SctpTransport, SctpTransport) {
    let mut a = SctpTransport::new(true, 256 * 1024);
    let mut b = SctpTransport::new(false, 256 * 1024);
    for _ in 0..16 {
        while let Some(p) = a.poll_transmit(now) {
            let _ = b.handle_input(now, &p);
        }
        while let Some(p) = b.poll_transmit(now) {
            let _ = a.handle_input(now, &p);
        }
        if a.is_connected() && b.is_connected() {
            break;
        }
    }
    (a, b)
}

fuzz_target!(|data: &[u8]| {
    // The DCEP parser on its own, with re-serialisation of anything it accepts.
    if let Ok(m) = DcepMessage::parse(data) {
        let mut buf = vec![0u8; m.encoded_len()];
        let _ = m.write(&mut buf);
    }

    let now = Instant::now();

    // A fresh server-side transport (nothing received yet).
    let mut fresh = SctpTransport::new(false, 256 * 1024);
    let _ = fresh.handle_input(now, data);
    while fresh.poll_transmit(now).is_some() {}
    while fresh.poll_event().is_some() {}

    // Both sides of a connected association.
    let (mut a, mut b) = connected_pair(now);
    let _ = a.handle_input(now, data);
    let _ = b.handle_input(now, data);
    let later = now + Duration::from_secs(5);
    for t in [a.poll_transmit(later), b.poll_transmit(later)] {
        drop(t);
    }
    a.handle_timeout(later);
    b.handle_timeout(later);
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
});
