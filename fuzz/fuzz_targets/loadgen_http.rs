#![no_main]
//! The loadgen's URL handling (`HttpUrl::parse`, `join`, `host_header`). Responses are
//! parsed by `ureq` now, which is fuzzed upstream; the hand-written parser this target
//! used to exercise is gone.
use libfuzzer_sys::fuzz_target;
use tools::loadgen::http::HttpUrl;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(u) = HttpUrl::parse(s)
    {
        let _ = u.join(s);
        let _ = u.host_header();
        let _ = u.origin();
    }
});
