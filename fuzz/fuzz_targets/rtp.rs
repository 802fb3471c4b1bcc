#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::rtp::{header_len, ExtensionMap, HeaderExtension, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = header_len(data);
    let Ok(pkt) = RtpPacket::parse(data) else {
        return;
    };
    let map = ExtensionMap::default();
    let mut out = [0u8; 2048];
    if let Ok(values) = pkt.extensions(&map) {
        // Re-serialise the typed extensions with the header.
        let _ = pkt.header.write(
            HeaderExtension::Values {
                map: &map,
                values: &values,
            },
            &mut out,
        );
    }
    let _ = pkt.header.write(
        HeaderExtension::Raw {
            profile: pkt.header.ext_profile,
            data: pkt.extension,
        },
        &mut out,
    );
});
