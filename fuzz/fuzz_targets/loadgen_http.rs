#![no_main]
use libfuzzer_sys::fuzz_target;
use tools::loadgen::http::{HttpUrl, parse_response};

fuzz_target!(|data: &[u8]| {
    let _ = parse_response(data, false);
    let _ = parse_response(data, true);
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(u) = HttpUrl::parse(s)
    {
        let _ = u.join(s);
        let _ = u.host_header();
    }
});
