#![no_main]
//! The SFU's payload parsers (`engine::sfu::codec`): VP8, VP9 and H.264 descriptors,
//! the combined `PayloadFacts`, and the VP8 picture-numbering rewrite.
//!
//! Input: a first byte of options (bits 0-1: rewrite PictureID / TL0PICIDX), two bytes
//! of PictureID and one of TL0PICIDX for the rewrite, then the payload. A rewritten
//! VP8 payload must parse back with the same layout and the new values, and with the
//! rest of the payload untouched.

use engine::sfu::codec::{PayloadFacts, VideoCodec, Vp8Rewrite, parse_h264, parse_vp8, parse_vp9};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [opts, p0, p1, tl0, payload @ ..] = data else {
        return;
    };
    let _ = parse_vp9(payload);
    let _ = parse_h264(payload);
    for codec in [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264] {
        let facts = PayloadFacts::parse(codec, payload);
        let _ = (
            facts.keyframe(),
            facts.tid(),
            facts.layer_sync(),
            facts.vp8(),
        );
    }
    let Some(desc) = parse_vp8(payload) else {
        return;
    };
    assert!(usize::from(desc.header_len) <= payload.len());
    let rewrite = Vp8Rewrite {
        picture_id: (opts & 1 == 1).then(|| u16::from_be_bytes([*p0, *p1]) & 0x7fff),
        tl0picidx: (opts & 2 == 2).then_some(*tl0),
    };
    let mut copy = payload.to_vec();
    assert!(
        rewrite.apply(&desc, &mut copy),
        "rewrite refused a parsed payload"
    );
    let again = parse_vp8(&copy).expect("a rewritten payload parses");
    assert_eq!(again.header_len, desc.header_len);
    assert_eq!(again.picture_id_15bit, desc.picture_id_15bit);
    assert_eq!(again.tid, desc.tid);
    assert_eq!(again.keyframe, desc.keyframe);
    if let (Some(pid), Some(_)) = (rewrite.picture_id, desc.picture_id) {
        let mask = if desc.picture_id_15bit { 0x7fff } else { 0x7f };
        assert_eq!(again.picture_id, Some(pid & mask));
    } else {
        assert_eq!(again.picture_id, desc.picture_id);
    }
    if let (Some(t), Some(_)) = (rewrite.tl0picidx, desc.tl0picidx) {
        assert_eq!(again.tl0picidx, Some(t));
    } else {
        assert_eq!(again.tl0picidx, desc.tl0picidx);
    }
    let h = usize::from(desc.header_len);
    assert_eq!(copy[h..], payload[h..]);
});
