#![no_main]
//! The first look at a datagram: the demultiplexer (RFC 7983) and the STUN username
//! peek a server (the engine's shard) routes unknown-source datagrams by.
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::demux::Datagram;
use rtc_core::ice::stun_ufrag;

fuzz_target!(|data: &[u8]| {
    let _ = Datagram::classify(data);
    if let Ok(Some(ufrag)) = stun_ufrag(data) {
        // The peeked ufrag is a sub-slice of the datagram's USERNAME.
        assert!(ufrag.len() < data.len());
    }
});
