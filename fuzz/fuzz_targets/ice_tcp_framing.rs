#![no_main]
//! RFC 4571 framing over ICE-TCP: the stream decoder fed arbitrary bytes in arbitrary
//! chunk splits.
//!
//! Input: a first byte choosing the decoder (bit 0: the smallest allowed limit), then
//! records `[split, bytes...]` where `split` is the chunk length (0 reads up to 255
//! at once; 0xff is a bulk chunk of 16 KiB copies of the one byte that follows).
//! Every datagram the decoder yields must be exactly what a reference decoder reading
//! the whole concatenated stream at once yields, in order; and each re-framed with
//! `frame` gives back its prefix and bytes.

use libfuzzer_sys::fuzz_target;
use rtc_core::ice::framing::{FramingError, StreamDecoder, frame};

/// Length of a bulk chunk (split byte 0xff).
const BULK: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let mut dec = if opts & 1 == 1 {
        StreamDecoder::with_limit(0)
    } else {
        StreamDecoder::new()
    };
    let mut stream: Vec<u8> = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut overflowed = false;
    let mut bulk = Vec::new();
    while let [split, tail @ ..] = rest {
        let chunk: &[u8] = if *split == 0xff {
            // A bulk chunk: BULK copies of the next byte, so that maximal frames and
            // the decoder's buffer limit are reachable from a short input.
            let Some((&fill, r)) = tail.split_first() else {
                break;
            };
            rest = r;
            bulk.clear();
            bulk.resize(BULK, fill);
            &bulk
        } else {
            let want = if *split == 0 {
                255
            } else {
                usize::from(*split)
            };
            let n = want.min(tail.len());
            rest = &tail[n..];
            &tail[..n]
        };
        match dec.push(chunk) {
            Ok(()) => stream.extend_from_slice(chunk),
            Err(FramingError::Overflow) => {
                // Only possible with more than a maximal frame buffered.
                assert!(dec.pending() + chunk.len() > 65535 + 2);
                overflowed = true;
                break;
            }
            Err(e) => panic!("push: unexpected {e:?}"),
        }
        while let Some(d) = dec.next_datagram() {
            got.push(d.to_vec());
        }
    }
    // Reference: parse the whole stream in one pass.
    let mut want = Vec::new();
    let mut at = 0;
    while let Some(head) = stream.get(at..at + 2) {
        let len = usize::from(u16::from_be_bytes([head[0], head[1]]));
        let Some(body) = stream.get(at + 2..at + 2 + len) else {
            break;
        };
        want.push(body.to_vec());
        at += 2 + len;
    }
    assert_eq!(got, want);
    if !overflowed {
        assert_eq!(dec.pending(), stream.len() - at);
    }
    let mut out = vec![0u8; 65535 + 2];
    for d in &got {
        let n = frame(d, &mut out).expect("a decoded datagram fits a frame");
        assert_eq!(&out[2..n], &d[..]);
        assert_eq!(usize::from(u16::from_be_bytes([out[0], out[1]])), d.len());
    }
});
