//! Simulcast receive (RID/MID resolution of unsignalled SSRCs, RTX per layer), the
//! RTX receive path's robustness, header-extension values and sender reports, between
//! `Rtc`s negotiated by SDP.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{NetConfig, Pair, Peer};
use rtc_core::event::Event;
use rtc_core::ice::Candidate;
use rtc_core::io::Output;
use rtc_core::media::{MediaKind, Mid};
use rtc_core::rtp::{
    AbsCaptureTime, AudioLevel, ExtensionMap, ExtensionValues, HeaderExtension, PlayoutDelay,
    RtpHeader, VideoOrientation,
};
use rtc_core::sdp::{Codec, Direction, RidDirection, SessionDescription};
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rid, Rtc};

const A_ADDR: &str = "10.0.0.1:5000";
const B_ADDR: &str = "10.0.0.2:6000";

/// `a` offers send-receive audio and video sections to `b` (both in RTP mode);
/// returns the connected pair, the audio and video mids and the offer text (with `a`'s
/// FID group).
fn av_pair() -> (Pair, Mid, Mid, String) {
    let now = Instant::now();
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendRecv);
    let video = api.add_media(MediaKind::Video, Direction::SendRecv);
    let (offer, pending) = api.apply().unwrap();
    let offer_text = offer.to_sdp_string();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer_text).unwrap())
        .unwrap();
    a.sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap(),
        )
        .unwrap();
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        7,
    );
    assert!(pair.run_until(Duration::from_secs(10), |p| p.both_connected()));
    (pair, audio, video, offer_text)
}

/// The `(primary, rtx)` SSRCs of the first `a=ssrc-group:FID` line of the video
/// section.
fn fid_group(sdp: &str) -> (u32, u32) {
    let line = sdp
        .lines()
        .skip_while(|l| !l.starts_with("m=video"))
        .find_map(|l| l.strip_prefix("a=ssrc-group:FID "))
        .expect("an FID group in the offer");
    let mut it = line.split(' ').map(|s| s.parse::<u32>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// A plain RTP packet (no extensions).
fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        version: 2,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1500];
    let n = h.write(HeaderExtension::None, &mut buf).unwrap();
    buf[n..n + payload.len()].copy_from_slice(payload);
    buf.truncate(n + payload.len());
    buf
}

#[test]
fn rtx_packet_with_short_payload_is_dropped() {
    let (mut pair, _, video, offer) = av_pair();
    let (primary, rtx_ssrc) = fid_group(&offer);
    let info = pair.b.rtc.media_info(video).unwrap();
    let vp8 = info.pt_for(&Codec::Vp8).unwrap();
    let rtx_pt = info.rtx.iter().find(|(p, _)| *p == vp8).unwrap().1;
    assert!(info.remote_rtx.contains(&(primary, rtx_ssrc)));
    // A primary packet first, so the RTX stream has somewhere to go.
    let p = rtp(vp8, 100, 9000, primary, &[1, 2, 3, 4]);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    // 13 and 12 bytes: RTX header plus a 1-byte / empty payload (no room for the OSN).
    for (seq, payload) in [(7u16, &[0xaa][..]), (8, &[][..])] {
        let p = rtp(rtx_pt, seq, 9000, rtx_ssrc, payload);
        assert!(p.len() <= 13);
        pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        pair.step();
    }
    // A valid RTX packet after them is still unwrapped to its primary.
    let mut payload = 101u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[5, 6, 7]);
    let p = rtp(rtx_pt, 9, 9000, rtx_ssrc, &payload);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    pair.run_until(Duration::from_millis(200), |_| false);
    let got: Vec<(u32, u64, Vec<u8>)> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            common::Ev::Rtp {
                ssrc,
                seq_no,
                payload,
            } => Some((*ssrc, *seq_no, payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            (primary, 100, vec![1, 2, 3, 4]),
            (primary, 101, vec![5, 6, 7])
        ]
    );
    // The 1-byte one counts as a drop; the empty one is like a padding probe.
    assert!(pair.b.rtc.stats().dropped >= 1);
}

/// One received RTP packet, owned, with what the simulcast tests check.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    mid: Option<Mid>,
    rid: Option<Rid>,
    layer: Option<u8>,
    ssrc: u32,
    pt: u8,
    seq_no: u64,
    payload: Vec<u8>,
    audio_level: Option<AudioLevel>,
    video_orientation: Option<VideoOrientation>,
    playout_delay: Option<PlayoutDelay>,
    abs_capture_time: Option<AbsCaptureTime>,
    dependency_descriptor: Option<Vec<u8>>,
}

/// Drives the pair like `Pair::run_until`, but first drains `b` (or `a` with `on_a`)
/// itself to keep its RTP packets with their layer and extension values (the common
/// harness keeps only SSRC and payload). Its datagrams go straight to the other peer.
fn run_collect(pair: &mut Pair, limit: Duration, got: &mut Vec<Got>, on_a: bool) {
    let end = pair.now + limit;
    while pair.now < end {
        let now = pair.now;
        let (rx, other) = if on_a {
            (&mut pair.a, &mut pair.b)
        } else {
            (&mut pair.b, &mut pair.a)
        };
        loop {
            match rx.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    rx.timeout = t;
                    break;
                }
                Output::Transmit(t) => {
                    let r = rtc_core::Receive {
                        proto: t.proto,
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents,
                    };
                    other
                        .rtc
                        .handle_input(rtc_core::Input::Receive(now, r))
                        .unwrap();
                }
                Output::Event(Event::RtpPacket(p)) => {
                    let e = p.extensions();
                    got.push(Got {
                        mid: p.mid,
                        rid: p.rid,
                        layer: p.layer,
                        ssrc: p.ssrc,
                        pt: p.payload_type,
                        seq_no: p.seq_no,
                        payload: p.payload().to_vec(),
                        audio_level: e.audio_level,
                        video_orientation: e.video_orientation,
                        playout_delay: e.playout_delay,
                        abs_capture_time: e.abs_capture_time,
                        dependency_descriptor: e.dependency_descriptor.map(<[u8]>::to_vec),
                    });
                }
                Output::Event(_) => {}
            }
        }
        pair.step();
    }
}

/// `b` (ours, RTP mode) answers the real Chromium simulcast offer, whose ICE and DTLS
/// parameters are replaced by those of `a` (driven by the direct API, as the
/// browser); `a` then writes the browser's packets by hand.
fn chromium_simulcast_pair() -> (Pair, Mid, ExtensionMap) {
    let now = Instant::now();
    let a_addr: SocketAddr = A_ADDR.parse().unwrap();
    let b_addr: SocketAddr = B_ADDR.parse().unwrap();
    let mut a = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    let mut b = Rtc::builder().set_rtp_mode(true).build(now).unwrap();
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    a.add_remote_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    b.add_remote_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    let creds = a.direct_api().local_ice_credentials();
    let fp = a.direct_api().local_dtls_fingerprint();
    let fixture = include_str!("fixtures/sdp/chromium-156-simulcast.sdp");
    let offer: String = fixture
        .lines()
        .filter(|l| !l.starts_with("a=candidate:"))
        .map(|l| {
            if l.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{}", creds.ufrag)
            } else if l.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{}", creds.pass)
            } else if l.starts_with("a=fingerprint:") {
                format!("a=fingerprint:{fp}")
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\r\n")
        .collect();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap();
    let answer = SessionDescription::parse(&answer.to_sdp_string()).unwrap();
    let video = answer
        .media
        .iter()
        .find(|m| m.mid.as_deref() == Some("1"))
        .unwrap();
    // The answer receives the three layers Chromium sends.
    assert_eq!(
        video
            .rids
            .iter()
            .map(|r| (r.id.as_str(), r.direction))
            .collect::<Vec<_>>(),
        [
            ("q", RidDirection::Recv),
            ("h", RidDirection::Recv),
            ("f", RidDirection::Recv)
        ]
    );
    let text = answer.to_string();
    assert!(text.contains("a=simulcast:recv q;h;f\r\n"), "{text}");
    for ext in [
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
        "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n",
        "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n",
        "a=extmap:12 https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension\r\n",
    ] {
        assert!(text.contains(ext), "{ext} in {text}");
    }
    let b_active = text.contains("a=setup:active");
    let (cb, fb) = (
        b.direct_api().local_ice_credentials(),
        b.direct_api().local_dtls_fingerprint(),
    );
    {
        let mut da = a.direct_api();
        da.set_remote_ice_credentials(cb);
        da.set_remote_fingerprint(fb);
        da.set_ice_controlling(true);
        da.start_dtls(!b_active).unwrap();
    }
    let mid = Mid::new("1").unwrap();
    let map = b.media_info(mid).unwrap().extensions.clone();
    let mut pair = Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        NetConfig::default(),
        11,
    );
    assert!(pair.run_until(Duration::from_secs(10), |p| p.both_connected()));
    (pair, mid, map)
}

/// Builds a packet the way Chromium does: `values` under the offer's extension ids,
/// then the payload, then `padding` bytes of RTP padding.
#[allow(clippy::too_many_arguments)]
fn chrome_packet(
    map: &ExtensionMap,
    values: &ExtensionValues<'_>,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: &[u8],
    padding: u8,
) -> Vec<u8> {
    let h = RtpHeader {
        version: 2,
        padding: padding > 0,
        payload_type: pt,
        sequence_number: seq,
        timestamp: ts,
        ssrc,
        ..Default::default()
    };
    let mut buf = vec![0u8; 1500];
    let ext = if *values == ExtensionValues::default() {
        HeaderExtension::None
    } else {
        HeaderExtension::Values { map, values }
    };
    let n = h.write(ext, &mut buf).unwrap();
    buf[n..n + payload.len()].copy_from_slice(payload);
    let mut len = n + payload.len();
    if padding > 0 {
        buf[len + usize::from(padding) - 1] = padding;
        len += usize::from(padding);
    }
    buf.truncate(len);
    buf
}

#[test]
fn chromium_simulcast_layers_bind_by_mid_and_rid() {
    let (mut pair, mid, map) = chromium_simulcast_pair();
    let info = pair.b.rtc.media_info(mid).unwrap().clone();
    assert_eq!(info.remote_rids, ["q", "h", "f"]);
    assert!(info.remote_ssrcs.is_empty(), "Chromium signals no SSRCs");
    let vp8 = info.pt_for(&Codec::Vp8).unwrap();
    let rtx_pt = info.rtx.iter().find(|(p, _)| *p == vp8).unwrap().1;
    let rids = ["q", "h", "f"];
    let media_ssrc = [0x1000_0001u32, 0x1000_0002, 0x1000_0003];
    let rtx_ssrc = [0x2000_0001u32, 0x2000_0002, 0x2000_0003];
    let mut got = Vec::new();

    // Bandwidth probes before any media: padding only, no MID/RID, on SSRC 0 and on
    // more distinct SSRCs than the stream table holds.
    for i in 0..100u32 {
        let ssrc = if i == 0 { 0 } else { 0x3000_0000 + i };
        let p = chrome_packet(
            &map,
            &ExtensionValues::default(),
            rtx_pt,
            i as u16,
            0,
            ssrc,
            &[],
            200,
        );
        pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        if i % 10 == 0 {
            run_collect(&mut pair, Duration::from_millis(1), &mut got, false);
        }
    }
    // A padding probe on a layer's RTX SSRC with MID and RRID, before the layer's
    // media: binds the RTX SSRC, delivers nothing.
    let probe = ExtensionValues {
        mid: Some("1"),
        repaired_rid: Some("f"),
        ..Default::default()
    };
    let p = chrome_packet(&map, &probe, rtx_pt, 500, 0, rtx_ssrc[2], &[], 100);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    run_collect(&mut pair, Duration::from_millis(20), &mut got, false);
    assert!(got.is_empty(), "{got:?}");

    // Media: MID and RID on the first 5 packets of each layer only. Extension values
    // ride on the first packet of layer h.
    let dd = [
        0x80u8, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11,
    ];
    for seq in 0..10u16 {
        for (l, rid) in rids.iter().enumerate() {
            let mut v = if seq < 5 {
                ExtensionValues {
                    mid: Some("1"),
                    rid: Some(rid),
                    ..Default::default()
                }
            } else {
                ExtensionValues::default()
            };
            if seq == 0 && l == 1 {
                v.video_orientation = Some(VideoOrientation {
                    back_camera: true,
                    flip: false,
                    rotation: 3,
                });
                v.playout_delay = Some(PlayoutDelay { min: 0, max: 100 });
                v.dependency_descriptor = Some(&dd);
            }
            let payload = [l as u8, seq as u8, 0xee];
            let p = chrome_packet(
                &map,
                &v,
                vp8,
                1000 * l as u16 + seq,
                90 * u32::from(seq),
                media_ssrc[l],
                &payload,
                0,
            );
            pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        }
        run_collect(&mut pair, Duration::from_millis(5), &mut got, false);
    }
    // RTX of each layer: the first with MID+RRID, a second one without any extension.
    for (l, rid) in rids.iter().enumerate() {
        for (k, osn_of) in [2u16, 7].into_iter().enumerate() {
            let v = if k == 0 {
                ExtensionValues {
                    mid: Some("1"),
                    repaired_rid: Some(rid),
                    ..Default::default()
                }
            } else {
                ExtensionValues::default()
            };
            let osn = 1000 * l as u16 + osn_of;
            let mut payload = osn.to_be_bytes().to_vec();
            payload.extend_from_slice(&[l as u8, osn_of as u8, 0xee]);
            let p = chrome_packet(
                &map,
                &v,
                rtx_pt,
                600 + 10 * l as u16 + k as u16,
                90 * u32::from(osn_of),
                rtx_ssrc[l],
                &payload,
                0,
            );
            pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
        }
    }
    run_collect(&mut pair, Duration::from_millis(100), &mut got, false);

    // Every media packet arrived attributed to its layer, the ones without MID/RID too.
    for (l, rid) in rids.iter().enumerate() {
        let layer: Vec<&Got> = got.iter().filter(|g| g.ssrc == media_ssrc[l]).collect();
        assert_eq!(
            layer.len(),
            12,
            "layer {rid}: 10 packets and 2 retransmissions"
        );
        for g in &layer {
            assert_eq!(g.mid, Some(mid));
            assert_eq!(g.rid, Rid::new(rid));
            assert_eq!(g.layer, Some(l as u8));
            assert_eq!(g.pt, vp8, "RTX unwrapped to the media payload type");
            assert_eq!(g.payload[0], l as u8);
            assert_eq!(g.seq_no % 1000, u64::from(g.payload[1]));
        }
        // The last two are the retransmissions of packets 2 and 7.
        let seqs: Vec<u64> = layer.iter().map(|g| g.seq_no - 1000 * l as u64).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 2, 7], "layer {rid}");
    }
    assert_eq!(got.len(), 36, "nothing else delivered: {got:?}");
    assert!(got.iter().all(|g| !rtx_ssrc.contains(&g.ssrc)));
    // The extension values of h's first packet, read with b's ids.
    let h0 = got.iter().find(|g| g.ssrc == media_ssrc[1]).unwrap();
    assert_eq!(
        h0.video_orientation,
        Some(VideoOrientation {
            back_camera: true,
            flip: false,
            rotation: 3
        })
    );
    assert_eq!(h0.playout_delay, Some(PlayoutDelay { min: 0, max: 100 }));
    assert_eq!(h0.dependency_descriptor.as_deref(), Some(&dd[..]));
    // Later layer packets after the first carry none of them.
    assert!(
        got.iter()
            .filter(|g| g.ssrc == media_ssrc[1])
            .skip(1)
            .all(|g| g.dependency_descriptor.is_none())
    );

    // A new probe storm after binding still finds all layers bound and the table
    // not exhausted by probes: a fourth, late RTX SSRC of layer q still binds.
    for i in 0..100u32 {
        let p = chrome_packet(
            &map,
            &ExtensionValues::default(),
            vp8,
            i as u16,
            0,
            0x4000_0000 + i,
            &[],
            50,
        );
        pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    }
    let v = ExtensionValues {
        mid: Some("1"),
        rid: Some("q"),
        ..Default::default()
    };
    let p = chrome_packet(&map, &v, vp8, 7000, 0, 0x1000_0004, &[9, 9, 9], 0);
    pair.a.rtc.direct_api().write_rtp_packet(&p).unwrap();
    got.clear();
    run_collect(&mut pair, Duration::from_millis(50), &mut got, false);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].ssrc, got[0].rid), (0x1000_0004, Rid::new("q")));
}

#[test]
fn extension_values_forward_round_trip_and_sender_reports() {
    let (mut pair, audio, video, _) = av_pair();
    let dd = [1u8, 2, 3];
    let sent_video = ExtensionValues {
        video_orientation: Some(VideoOrientation {
            back_camera: false,
            flip: true,
            rotation: 1,
        }),
        playout_delay: Some(PlayoutDelay { min: 10, max: 200 }),
        abs_capture_time: Some(AbsCaptureTime {
            timestamp: 0x1234_5678_9abc_def0,
            clock_offset: Some(-5),
        }),
        // We do not offer the dependency descriptor: unmapped, it is not written.
        dependency_descriptor: Some(&dd),
        ..Default::default()
    };
    let sent_audio = ExtensionValues {
        audio_level: Some(AudioLevel {
            voice: true,
            level: 42,
        }),
        ..Default::default()
    };
    let vp8 = pair
        .a
        .rtc
        .media_info(video)
        .unwrap()
        .pt_for(&Codec::Vp8)
        .unwrap();
    let opus = pair
        .a
        .rtc
        .media_info(audio)
        .unwrap()
        .pt_for(&Codec::Opus)
        .unwrap();
    let now = pair.now;
    let mut tx = pair.a.rtc.stream_tx(video).unwrap();
    tx.write_rtp(vp8, 1, 3000, now, true, &sent_video, &[1, 2, 3])
        .unwrap();
    let mut tx = pair.a.rtc.stream_tx(audio).unwrap();
    tx.write_rtp(opus, 1, 960, now, false, &sent_audio, &[4, 5])
        .unwrap();
    let mut got = Vec::new();
    run_collect(&mut pair, Duration::from_millis(50), &mut got, false);
    assert_eq!(got.len(), 2, "{got:?}");
    let v = got.iter().find(|g| g.mid == Some(video)).unwrap().clone();
    let a = got.iter().find(|g| g.mid == Some(audio)).unwrap().clone();
    assert_eq!(v.video_orientation, sent_video.video_orientation);
    assert_eq!(v.playout_delay, sent_video.playout_delay);
    assert_eq!(v.abs_capture_time, sent_video.abs_capture_time);
    assert_eq!(v.dependency_descriptor, None);
    assert_eq!((v.rid, v.layer), (None, None));
    assert_eq!(a.audio_level, sent_audio.audio_level);
    assert_eq!(a.video_orientation, None);

    // Forward: b writes what it read back to a, under b's own negotiated ids.
    let fwd = ExtensionValues {
        video_orientation: v.video_orientation,
        playout_delay: v.playout_delay,
        abs_capture_time: v.abs_capture_time,
        ..Default::default()
    };
    let now = pair.now;
    let mut tx = pair.b.rtc.stream_tx(video).unwrap();
    tx.write_rtp(vp8, 9, 6000, now, true, &fwd, &v.payload)
        .unwrap();
    let mut back = Vec::new();
    run_collect(&mut pair, Duration::from_millis(50), &mut back, true);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0].payload, [1, 2, 3]);
    assert_eq!(back[0].video_orientation, sent_video.video_orientation);
    assert_eq!(back[0].playout_delay, sent_video.playout_delay);
    assert_eq!(back[0].abs_capture_time, sent_video.abs_capture_time);

    // Sender reports of a's streams are exposed on b per SSRC.
    let ssrc = pair.a.rtc.tx_ssrc(video).unwrap();
    assert!(pair.run_until(Duration::from_secs(3), |p| {
        p.b.rtc.sender_report(ssrc).is_some()
    }));
    let sr = pair
        .b
        .rtc
        .sender_report(ssrc)
        .expect("a sender report within 3 s");
    assert_eq!((sr.mid, sr.ssrc, sr.rid), (Some(video), ssrc, None));
    assert_ne!(sr.ntp, 0);
    assert!(sr.received <= pair.now);
    assert_eq!(pair.b.rtc.sender_report(0xdead_beef), None);
}

/// The Chromium offer with a fourth layer `x` and an invalid (too long) RID added.
fn four_layer_offer() -> String {
    include_str!("fixtures/sdp/chromium-156-simulcast.sdp")
        .replace(
            "a=rid:f send\r\n",
            "a=rid:f send\r\na=rid:x send\r\na=rid:abcdefghijklmnopqrstu send\r\n",
        )
        .replace(
            "a=simulcast:send q;h;f\r\n",
            "a=simulcast:send q;h;f;x;abcdefghijklmnopqrstu\r\n",
        )
}

#[test]
fn answer_receives_at_most_three_layers() {
    let offer = four_layer_offer();
    assert!(offer.contains("a=rid:x send"));
    let mut b = Rtc::builder()
        .set_rtp_mode(true)
        .build(Instant::now())
        .unwrap();
    let answer = b
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
        .unwrap()
        .to_sdp_string();
    assert!(answer.contains("a=simulcast:recv q;h;f\r\n"), "{answer}");
    assert!(!answer.contains("a=rid:x"));
    let info = b.media_info(Mid::new("1").unwrap()).unwrap();
    assert_eq!(info.remote_rids, ["q", "h", "f"]);
}

#[test]
fn rid_and_simulcast_sdp_round_trip() {
    let seeds = [
        include_str!("fixtures/sdp/chromium-156-simulcast.sdp"),
        include_str!("../../fuzz/seeds/sdp/chromium-156-simulcast-video.sdp"),
        include_str!("../../fuzz/seeds/sdp/simulcast-recv-answer.sdp"),
        include_str!("../../fuzz/seeds/sdp/simulcast-rid-restrictions.sdp"),
    ];
    for text in seeds {
        let sd = SessionDescription::parse(text).unwrap();
        let video = sd
            .media
            .iter()
            .find(|m| m.mid.as_deref() == Some("1"))
            .unwrap();
        assert!(video.rids.len() >= 3 && video.simulcast.is_some());
        let again = SessionDescription::parse(&sd.to_string()).unwrap();
        assert_eq!(again, sd);
    }
    let sd = SessionDescription::parse(include_str!(
        "../../fuzz/seeds/sdp/simulcast-rid-restrictions.sdp"
    ))
    .unwrap();
    let video = &sd.media[0];
    let q = &video.rids[0];
    assert_eq!((q.id.as_str(), q.direction), ("q", RidDirection::Send));
    assert_eq!(q.payloads, [96]);
    assert_eq!(
        q.restrictions[0],
        ("max-width".to_owned(), Some("320".to_owned()))
    );
    let sim = video.simulcast.as_ref().unwrap();
    assert_eq!(sim.send.len(), 2);
    assert!(sim.send[1][0].paused && sim.send[1][0].id == "h");
    assert_eq!(sim.send[1][1].id, "f");
    assert_eq!(sim.recv[0][0].id, "r");
}
