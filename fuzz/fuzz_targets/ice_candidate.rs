#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::ice::Candidate;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = Candidate::from_sdp_string(s)
    {
        let line = c.to_sdp_string();
        assert_eq!(Candidate::from_sdp_string(&line).ok(), Some(c));
    }
});
