use super::*;

#[test]
fn frame_sizes_average_to_bitrate() {
    let m = MediaParams {
        video: true,
        audio: true,
        video_kbps: 1000,
        fps: 25,
        keyframe_every: 50,
        audio_bytes: 80,
        audio_period: Duration::from_millis(20),
        simulcast: false,
    };
    let (k, d) = m.frame_sizes();
    assert_eq!(k, 3 * d);
    let gop_bytes = k + 49 * d;
    let per_sec = gop_bytes as f64 / 2.0;
    assert!((per_sec - 125_000.0).abs() < 200.0, "{per_sec}");
    assert_eq!(m.frame_period(), Duration::from_millis(40));
    assert_eq!(m.audio_ts_step(), 960, "48 kHz x 20 ms");
    let dtx = MediaParams {
        audio_period: Duration::from_millis(400),
        ..m
    };
    assert_eq!(dtx.audio_ts_step(), 19_200, "48 kHz x 400 ms");
}

#[test]
fn stream_booking() {
    let mut streams = Vec::new();
    let st = |publisher, seq| Stamp {
        publisher,
        kind: StreamKind::Video,
        keyframe: false,
        layer: 0,
        seq,
        send_ns: 1,
    };
    for s in [0, 1, 3, 2, 2] {
        record_stream(&mut streams, &st(1, s));
    }
    record_stream(&mut streams, &st(2, 10));
    assert_eq!(streams.len(), 2);
}

#[test]
fn ssrc_booking_counts_loss_reorder_and_duplicates() {
    let mut ssrcs = Vec::new();
    let mut t = Totals::default();
    for s in [100, 101, 103, 102, 102, 105] {
        record_ssrc(&mut ssrcs, &mut t, 7, s);
    }
    record_ssrc(&mut ssrcs, &mut t, 8, 10);
    assert_eq!(ssrcs.len(), 2);
    // 100..=105 and 10: 7 expected, 6 distinct (104 lost).
    assert_eq!(t.expected, 7);
    assert_eq!(t.unique, 6);
    assert_eq!(t.checks.out_of_order, 1);
    assert_eq!(t.checks.duplicates, 1);
}

#[test]
fn rtp_sequence_is_read_from_rtp_only() {
    let mut d = [0u8; 20];
    d[0] = 0x80;
    d[1] = 96;
    d[2..4].copy_from_slice(&4660u16.to_be_bytes());
    assert_eq!(rtp_seq(&d), Some(4660));
    d[1] = 200; // RTCP sender report
    assert_eq!(rtp_seq(&d), None);
    d[1] = 96;
    d[0] = 0x16; // DTLS
    assert_eq!(rtp_seq(&d), None);
    assert_eq!(rtp_seq(&[0x80, 96, 0]), None);
}
