#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sd) = SessionDescription::parse(text) {
        let written = sd.to_sdp();
        let _ = SessionDescription::parse(&written);
    }
});
