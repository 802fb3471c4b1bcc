#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::stun::{StunMessage, StunWriter};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = StunMessage::parse(data) {
        let _ = m.check_integrity(b"key");
        let _ = m.check_fingerprint();
        // Re-serialise the typed attributes; must not panic.
        let mut out = [0u8; 1500];
        if let Ok(mut w) = StunWriter::new(&mut out, m.class(), m.method(), m.transaction_id()) {
            if let Some(u) = m.username() {
                let _ = w.username(u);
            }
            if let Some(a) = m.xor_mapped_address() {
                let _ = w.xor_mapped_address(a);
            }
            if let Some(p) = m.priority() {
                let _ = w.priority(p);
            }
            if let Some(e) = m.error_code() {
                let _ = w.error_code(e.code, e.reason);
            }
            let _ = w.message_integrity(b"key");
            let _ = w.fingerprint();
            let n = w.finish();
            let _ = StunMessage::parse(&out[..n]);
        }
    }
});
