//! Frame mode and RTP mode media between two `Rtc` negotiated by SDP.

mod common;

use std::time::Duration;

use common::{NetConfig, connected_pair};
use rtc_core::sdp::Codec;

fn h264_frame(i: u32) -> Vec<u8> {
    let mut f = Vec::new();
    if i == 0 {
        f.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01]);
        f.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
        f.extend_from_slice(&[0, 0, 0, 1, 0x65]);
    } else {
        f.extend_from_slice(&[0, 0, 0, 1, 0x41]);
    }
    f.extend((0..3000 + i * 10).map(|k| ((k * 7 + i) % 250 + 1) as u8));
    f
}

fn av1_frame(i: u32) -> Vec<u8> {
    let mut f = vec![0x12, 0x00]; // temporal delimiter
    if i == 0 {
        f.extend_from_slice(&[
            0x0a, 0x0b, 0, 0, 0, 0x24, 0xcf, 0x7f, 0x0d, 0xbf, 0xff, 0x30, 0x08,
        ]);
    }
    let payload: Vec<u8> = (0..2500 + i).map(|k| (k % 200) as u8 + 1).collect();
    f.push(0x32); // frame OBU with size
    let mut n = payload.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            f.push(b);
            break;
        }
        f.push(b | 0x80);
    }
    f.extend_from_slice(&payload);
    f
}

#[test]
fn frame_mode_round_trip_all_codecs() {
    let (mut pair, audio, video) = connected_pair(false, NetConfig::default());
    let codecs = [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1];
    let mut sent: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut t = 0u64;
    for codec in codecs {
        let pt = pair
            .a
            .rtc
            .media_info(video)
            .unwrap()
            .pt_for(&codec)
            .unwrap();
        for i in 0..10u32 {
            let data = match codec {
                Codec::H264 => h264_frame(i),
                Codec::Av1 => av1_frame(i),
                Codec::Vp8 => {
                    // VP8 payload header: P bit (0 = keyframe) in the first byte.
                    let mut d: Vec<u8> = (0..4000 + i).map(|k| (k % 251) as u8).collect();
                    d[0] = if i == 0 { 0x10 } else { 0x11 };
                    d
                }
                _ => (0..3500 + i).map(|k| (k % 241) as u8).collect(),
            };
            let now = pair.now;
            pair.a
                .rtc
                .writer(video)
                .unwrap()
                .write(pt, now, t, &data)
                .unwrap();
            sent.push((pt, data));
            t += 3000;
            pair.step();
        }
    }
    let opus = pair
        .a
        .rtc
        .media_info(audio)
        .unwrap()
        .pt_for(&Codec::Opus)
        .unwrap();
    let mut audio_sent = Vec::new();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..100 + i).map(|k| (k + i) as u8).collect();
        let now = pair.now;
        pair.a
            .rtc
            .writer(audio)
            .unwrap()
            .write(opus, now, u64::from(i) * 960, &data)
            .unwrap();
        audio_sent.push(data);
        pair.step();
    }
    pair.run_until(Duration::from_secs(1), |_| false);
    let got = pair.b.media();
    let video_got: Vec<(u8, Vec<u8>)> = got
        .iter()
        .filter(|g| g.0 == video)
        .map(|g| (g.1, g.4.clone()))
        .collect();
    assert_eq!(video_got.len(), sent.len(), "video frames");
    for (i, (g, s)) in video_got.iter().zip(&sent).enumerate() {
        assert_eq!(g.0, s.0, "pt of frame {i}");
        assert_eq!(g.1, s.1, "data of frame {i} (pt {})", s.0);
    }
    let audio_got: Vec<Vec<u8>> = got
        .iter()
        .filter(|g| g.0 == audio)
        .map(|g| g.4.clone())
        .collect();
    assert_eq!(audio_got, audio_sent);
    // The first VP8, H264 and AV1 frames are keyframes.
    let keyframes: Vec<bool> = got.iter().filter(|g| g.0 == video).map(|g| g.2).collect();
    assert!(
        keyframes[0] && keyframes[20] && keyframes[30],
        "{keyframes:?}"
    );
}

fn vp8_frame(i: u32) -> Vec<u8> {
    let mut d: Vec<u8> = (0..2500 + (i % 7) * 100)
        .map(|k| ((k + i) % 251) as u8)
        .collect();
    d[0] = if i == 0 { 0x10 } else { 0x11 };
    d
}

#[test]
fn nack_and_rtx_recover_every_frame_under_loss_and_reordering() {
    let net = NetConfig {
        loss: 0.05,
        reorder: 0.05,
        jitter: Duration::from_millis(3),
        ..Default::default()
    };
    let (mut pair, _audio, video) = connected_pair(false, NetConfig::default());
    let pt = pair
        .a
        .rtc
        .media_info(video)
        .unwrap()
        .pt_for(&Codec::Vp8)
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..300u32 {
        // A NACK can only name packets after the first one received, so the stream
        // starts on a clean network; loss and reordering begin with frame 3. Nor can
        // it name a packet after the newest one received (a lost tail is revealed
        // only by the next frame), so the last frame travels on a clean network too.
        if i == 3 {
            pair.net = net.clone();
        }
        if i == 299 {
            pair.net = NetConfig::default();
        }
        let data = vp8_frame(i);
        let now = pair.now;
        pair.a
            .rtc
            .writer(video)
            .unwrap()
            .write(pt, now, u64::from(i) * 3000, &data)
            .unwrap();
        sent.push(data);
        // 30 fps in virtual time.
        let until = pair.now + Duration::from_millis(33);
        pair.run_until(until - pair.now, |_| false);
    }
    pair.run_until(Duration::from_secs(3), |_| false);
    let got: Vec<Vec<u8>> = pair
        .b
        .media()
        .into_iter()
        .filter(|m| m.0 == video)
        .map(|m| m.4)
        .collect();
    assert!(
        pair.lost > 20,
        "the network must have lost packets ({})",
        pair.lost
    );
    let missing: Vec<usize> = sent
        .iter()
        .enumerate()
        .filter(|(_, s)| !got.contains(s))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        got.len(),
        sent.len(),
        "every frame recovered; missing {missing:?}"
    );
    assert_eq!(got, sent);
    let rtx = pair.a.events.iter().filter(|e| matches!(e, common::Ev::Other(s) if s.starts_with("MediaEgressStats") && !s.contains("rtx_sent: 0,"))).count();
    assert!(rtx > 0, "RTX was used");
}

#[test]
fn reports_measure_the_round_trip_time() {
    // 10 ms each way: 20 ms RTT.
    let (mut pair, _audio, video) = connected_pair(false, NetConfig::default());
    let pt = pair
        .a
        .rtc
        .media_info(video)
        .unwrap()
        .pt_for(&Codec::Vp8)
        .unwrap();
    for i in 0..150u32 {
        let now = pair.now;
        pair.a
            .rtc
            .writer(video)
            .unwrap()
            .write(pt, now, u64::from(i) * 3000, &vp8_frame(i))
            .unwrap();
        pair.run_until(Duration::from_millis(33), |_| false);
    }
    let rtts: Vec<String> = pair
        .a
        .events
        .iter()
        .filter_map(|e| match e {
            common::Ev::Other(s) if s.starts_with("MediaEgressStats") => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert!(pair.b.rtc.stats().twcc_feedback_sent > 50);
    assert!(pair.a.rtc.stats().twcc_feedback_received > 50);
    let last = rtts.last().expect("egress stats events");
    let rtt_ms: f64 = last
        .split("rtt: Some(")
        .nth(1)
        .and_then(|r| r.split("ms").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rtt in {last}"));
    assert!(
        (15.0..=25.0).contains(&rtt_ms),
        "rtt {rtt_ms} ms, expected 20 ± 5: {last}"
    );
}
