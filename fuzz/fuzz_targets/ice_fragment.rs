#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::sdp::IceFragment;

// The trickle ICE fragment parser (WHIP/WHEP PATCH bodies): never panics, and what it
// accepts writes back to text that parses to the same fragment. (A body of attributes
// that mean nothing for ICE parses to the empty fragment, which writes no line at all:
// an empty body is refused, so that one has no round trip.)
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(f) = IceFragment::parse(s)
        && f != IceFragment::default()
    {
        let text = f.to_sdpfrag();
        assert_eq!(IceFragment::parse(&text).ok(), Some(f));
    }
});
