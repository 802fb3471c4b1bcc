#![no_main]
//! RED (RFC 2198) payloads: parsing never panics or reads out of bounds, a parsed
//! payload written back is byte-identical, and renumbering block types keeps it valid.
use libfuzzer_sys::fuzz_target;
use rtc_core::rtp::red::{rewrite_block_pts, write_red, RedBlock, RedPayload, MAX_RED_BLOCKS};

fuzz_target!(|data: &[u8]| {
    let Ok(red) = RedPayload::parse(data) else {
        return;
    };
    let mut blocks = [RedBlock {
        payload_type: 0,
        timestamp_offset: 0,
        data: &[],
    }; MAX_RED_BLOCKS];
    let mut n = 0;
    for b in red.redundant() {
        blocks[n] = b;
        n += 1;
    }
    assert_eq!(n, red.redundant_count());
    let mut out = [0u8; 8192];
    let len = write_red(&red.primary, &blocks[..n], &mut out).expect("parsed blocks fit");
    assert_eq!(&out[..len], data);
    let mut copy = [0u8; 8192];
    let copy = &mut copy[..data.len()];
    copy.copy_from_slice(data);
    rewrite_block_pts(copy, |pt| Some(pt ^ 0x55)).expect("still parses");
    let again = RedPayload::parse(copy).expect("renumbered payload parses");
    assert_eq!(again.primary.payload_type, red.primary.payload_type ^ 0x55);
    assert_eq!(again.primary.data, red.primary.data);
});
