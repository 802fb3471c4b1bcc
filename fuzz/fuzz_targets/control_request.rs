#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server's request-line parser must never panic; a parsed request must
    // re-serialise to a line that parses back to the same request.
    if let Ok(env) = control::parse_request_line(data) {
        let line = env.request.to_line(&env.id);
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        assert!(!body.contains(&b'\n'));
        let again = control::parse_request_line(body).ok();
        assert_eq!(again.as_ref(), Some(&env));
    }
    // The client's line parser sees server output; it must not panic either.
    let _ = control::parse_server_line(data);
});
