#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::sdp::IceFragment;

// The trickle ICE fragment parser (WHIP/WHEP PATCH bodies): never panics, and what it
// accepts writes back to text that parses to the same fragment.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(f) = IceFragment::parse(s)
    {
        let text = f.to_sdpfrag();
        assert_eq!(IceFragment::parse(&text).ok(), Some(f));
    }
});
