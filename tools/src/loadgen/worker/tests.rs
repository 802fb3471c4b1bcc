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
    };
    let (k, d) = m.frame_sizes();
    assert_eq!(k, 3 * d);
    let gop_bytes = k + 49 * d;
    let per_sec = gop_bytes as f64 / 2.0;
    assert!((per_sec - 125_000.0).abs() < 200.0, "{per_sec}");
    assert_eq!(m.frame_period(), Duration::from_millis(40));
}

#[test]
fn stream_booking() {
    let mut streams = Vec::new();
    let mut t = Totals::default();
    let st = |publisher, seq| Stamp {
        publisher,
        kind: StreamKind::Video,
        keyframe: false,
        seq,
        send_ns: 1,
    };
    for s in [0, 1, 3, 2, 2] {
        record_stream(&mut streams, &mut t, &st(1, s));
    }
    record_stream(&mut streams, &mut t, &st(2, 10));
    assert_eq!(streams.len(), 2);
    assert_eq!(t.expected, 5);
    assert_eq!(t.unique, 5);
    assert_eq!(t.checks.out_of_order, 1);
    assert_eq!(t.checks.duplicates, 1);
}
