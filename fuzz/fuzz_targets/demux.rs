#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::demux::Datagram;

fuzz_target!(|data: &[u8]| {
    let _ = Datagram::classify(data);
});
