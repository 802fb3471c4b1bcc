#![no_main]
use libfuzzer_sys::fuzz_target;
use tools::loadgen::payload::{check, write_audio, write_video};

fuzz_target!(|data: &[u8]| {
    if let Ok(stamp) = check(data) {
        // A payload that verifies re-serialises to the same stamp.
        let mut buf = vec![0u8; data.len()];
        let written = match stamp.kind {
            tools::loadgen::payload::StreamKind::Audio => write_audio(&mut buf, data.len(), &stamp),
            tools::loadgen::payload::StreamKind::Video => {
                write_video(&mut buf, data.len(), false, &stamp)
            }
        };
        if let Ok(n) = written {
            assert_eq!(check(&buf[..n]), Ok(stamp));
        }
    }
});
