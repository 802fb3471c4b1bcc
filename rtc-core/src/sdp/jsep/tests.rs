//! Unit tests of JSEP negotiation (a `#[cfg(test)]` module of `sdp::jsep`).

use super::*;
use crate::sdp::SessionDescription;
use crate::sdp::tests::{fixture, fixtures};
use proptest::prelude::*;

fn pts(m: &MediaSection) -> Vec<u8> {
    m.payloads.iter().map(|p| p.pt).collect()
}

fn apts(m: &MediaSection) -> Vec<(u8, u8)> {
    m.payloads
        .iter()
        .filter(|p| p.codec == Codec::Rtx)
        .map(|p| (p.pt, p.fmtp.apt.unwrap()))
        .collect()
}

fn ext_ids(m: &MediaSection) -> Vec<(u16, &str)> {
    m.extmaps.iter().map(|e| (e.id, e.uri.as_str())).collect()
}

fn answer_all(sd: &SessionDescription, want: Direction) -> Vec<MediaSection> {
    let codecs = LocalCodecs::default();
    let exts = supported_extensions();
    sd.media
        .iter()
        .map(|m| answer_media(m, &codecs, &exts, want))
        .collect()
}

#[test]
fn every_fixture_answers_and_negotiates() {
    for (name, text) in fixtures() {
        let offer = SessionDescription::parse(&text).unwrap();
        let answers = answer_all(&offer, Direction::SendRecv);
        let mut answer_sd = SessionDescription::default();
        answer_sd.groups.push(bundle_group(&answers));
        answer_sd.media = answers.clone();
        let reparsed = SessionDescription::parse(&answer_sd.to_sdp()).unwrap();
        assert_eq!(reparsed, answer_sd, "{name}");
        for (o, a) in offer.media.iter().zip(&answers) {
            assert_eq!(a.mid, o.mid, "{name}");
            assert_eq!(a.kind, o.kind, "{name}");
            let n = negotiate_from_offer(o, a).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(n.rejected, a.port == 0, "{name}");
            if a.port != 0 && a.kind != SectionKind::Application {
                assert!(!n.payloads.is_empty(), "{name}");
                // Each answered RTX apt points at an answered primary.
                for (apt, rtx) in &n.rtx {
                    assert!(n.payloads.iter().any(|p| p.pt == *apt), "{name} {rtx}");
                }
            }
        }
    }
}

#[test]
fn chrome_simulcast_answer() {
    let offer = fixture("chrome_offer_simulcast_datachannel.sdp");
    let a = answer_all(&offer, Direction::SendRecv);

    let audio = &a[0];
    assert_eq!(audio.port, 9);
    assert_eq!(pts(audio), [111]);
    assert_eq!(
        audio.payloads[0].fmtp.to_string(),
        "minptime=10;useinbandfec=1"
    );
    assert_eq!(audio.payloads[0].rtcp_fb, ["transport-cc"]);
    assert_eq!(audio.direction, Some(Direction::SendRecv));
    assert_eq!(audio.formats, ["111"]);
    assert!(audio.rtcp_mux && audio.rtcp_rsize);
    assert_eq!(
        ext_ids(audio),
        [
            (1, EXT_AUDIO_LEVEL),
            (2, EXT_ABS_SEND_TIME),
            (3, EXT_TRANSPORT_CC),
            (4, EXT_MID)
        ]
    );

    let video = &a[1];
    // Our preference order, under the offerer's PTs: VP8, VP9 p0, H264 CB pm1
    // (offered as 106), H264 Baseline pm1 (offered as 102), AV1.
    assert_eq!(pts(video), [96, 97, 98, 99, 106, 107, 102, 103, 45, 46]);
    assert_eq!(
        apts(video),
        [(97, 96), (99, 98), (107, 106), (103, 102), (46, 45)]
    );
    let h = video.payload(106).unwrap();
    assert_eq!(h.fmtp.profile_level_id.unwrap().to_string(), "42e01f");
    assert_eq!(
        video
            .payload(102)
            .unwrap()
            .fmtp
            .profile_level_id
            .unwrap()
            .to_string(),
        "42001f"
    );
    // goog-remb is offered but not ours.
    assert_eq!(h.rtcp_fb, ["transport-cc", "ccm fir", "nack", "nack pli"]);
    assert_eq!(video.direction, Some(Direction::RecvOnly));
    assert_eq!(
        ext_ids(video),
        [
            (2, EXT_ABS_SEND_TIME),
            (13, EXT_VIDEO_ORIENTATION),
            (3, EXT_TRANSPORT_CC),
            (5, EXT_PLAYOUT_DELAY),
            (4, EXT_MID),
            (10, EXT_RTP_STREAM_ID),
            (11, EXT_REPAIRED_RTP_STREAM_ID),
        ]
    );
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
    let sim = video.simulcast.as_ref().unwrap();
    assert!(sim.send.is_empty());
    assert_eq!(sim.recv.len(), 3);
    let text = video.to_string();
    assert!(text.contains("a=simulcast:recv q;h;f\r\n"), "{text}");
    assert!(text.contains("a=rid:h recv\r\n"));

    let app = &a[2];
    assert_eq!(app.port, 9);
    assert_eq!(app.formats, ["webrtc-datachannel"]);
    assert_eq!(app.sctp_port, Some(5000));
    assert_eq!(app.max_message_size, Some(262144));
    assert_eq!(bundle_group(&a).mids, ["0", "1", "2"]);

    // We answered: remote RIDs come from the offer, direction is ours.
    let n = negotiate_from_offer(&offer.media[1], video).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.remote_rids, ["q", "h", "f"]);
    assert_eq!(
        n.rtx,
        [(96, 97), (98, 99), (106, 107), (102, 103), (45, 46)]
    );
    assert_eq!(n.extensions.len(), 7);
    assert!(n.extensions.contains(&(3, EXT_TRANSPORT_CC.to_string())));
    let n = negotiate_from_offer(&offer.media[2], app).unwrap();
    assert_eq!(
        (n.local_sctp_port, n.remote_sctp_port),
        (Some(5000), Some(5000))
    );
    assert_eq!(n.remote_max_message_size, Some(262144));
    let n = negotiate_from_offer(&offer.media[0], audio).unwrap();
    assert_eq!(n.remote_ssrcs, [3735928559]);
    assert_eq!(n.remote_cname.as_deref(), Some("Hk2lT0bXq9Zp+e4R"));
}

#[test]
fn chrome_fid_answer_with_want() {
    let offer = fixture("chrome_offer_fid.sdp");
    let a = answer_all(&offer, Direction::RecvOnly);
    assert_eq!(pts(&a[0]), [111]);
    assert_eq!(a[0].direction, Some(Direction::RecvOnly));
    assert_eq!(pts(&a[1]), [96, 97, 102, 103, 45, 46]);
    assert_eq!(apts(&a[1]), [(97, 96), (103, 102), (46, 45)]);
    assert_eq!(a[1].direction, Some(Direction::RecvOnly));
    assert!(a[1].rids.is_empty() && a[1].simulcast.is_none());
    let n = negotiate_from_offer(&offer.media[1], &a[1]).unwrap();
    assert_eq!(n.remote_ssrcs, [2002, 2003]);
    assert_eq!(n.remote_rtx_ssrcs, [(2002, 2003)]);
    assert_eq!(
        n.remote_msid.as_ref().unwrap().track_id.as_deref(),
        Some("video0")
    );
    assert_eq!(n.direction, Direction::RecvOnly);
    let a = answer_all(&offer, Direction::Inactive);
    assert_eq!(a[1].direction, Some(Direction::Inactive));
    assert_eq!(a[1].port, 9);
}

#[test]
fn firefox_answer() {
    let offer = fixture("firefox_offer.sdp");
    let a = answer_all(&offer, Direction::SendRecv);
    assert_eq!(pts(&a[0]), [109]);
    assert_eq!(a[0].payloads[0].channels, Some(2));
    assert_eq!(ext_ids(&a[0]), [(1, EXT_AUDIO_LEVEL), (3, EXT_MID)]);
    // H264 97 is packetization-mode 0 and Firefox offers no Baseline: unmatched.
    assert_eq!(pts(&a[1]), [120, 124, 121, 125, 126, 127]);
    assert_eq!(apts(&a[1]), [(124, 120), (125, 121), (127, 126)]);
    assert_eq!(a[1].direction, Some(Direction::SendRecv));
    assert!(!a[1].rtcp_rsize || offer.media[1].rtcp_rsize);
    assert!(!a[0].rtcp_rsize);
    let exts: Vec<_> = a[1]
        .extmaps
        .iter()
        .map(|e| (e.id, e.direction, e.uri.as_str()))
        .collect();
    assert_eq!(
        exts,
        [
            (3, None, EXT_MID),
            (4, None, EXT_ABS_SEND_TIME),
            (6, Some(Direction::SendOnly), EXT_PLAYOUT_DELAY),
            (7, None, EXT_TRANSPORT_CC),
        ]
    );
    assert_eq!(a[2].max_message_size, Some(1073741823));
    let n = negotiate_from_offer(&offer.media[1], &a[1]).unwrap();
    assert_eq!(n.remote_rtx_ssrcs, [(3016547832, 1983745621)]);
    assert_eq!(
        n.remote_cname.as_deref(),
        Some("{4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8}")
    );
}

#[test]
fn safari_answer() {
    let offer = fixture("safari_offer.sdp");
    let a = answer_all(&offer, Direction::SendRecv);
    assert_eq!(pts(&a[0]), [111]);
    assert!(!a[0].rtcp_rsize && a[0].rtcp_mux);
    // Constrained High (640c1f) and H265 are not ours; no Baseline H264 offered.
    assert_eq!(pts(&a[1]), [127, 125, 104, 105, 98, 99]);
    assert_eq!(apts(&a[1]), [(125, 127), (105, 104), (99, 98)]);
    assert_eq!(a[1].direction, Some(Direction::SendRecv));
    assert!(a[1].rtcp_rsize);
    let n = negotiate_from_offer(&offer.media[1], &a[1]).unwrap();
    assert_eq!(n.remote_rtx_ssrcs, [(1903477251, 2716381046)]);
    assert_eq!(n.extensions.len(), 7);
}

#[test]
fn sfu_ice_lite_answer() {
    let offer = fixture("sfu_ice_lite_offer.sdp");
    assert!(offer.ice_lite);
    assert_eq!(offer.ice_options, ["trickle", "ice2"]);
    assert_eq!(offer.connection.as_ref().unwrap().address, "203.0.113.10");
    assert_eq!(offer.bundle_mids().unwrap(), ["a0", "v0", "d0"]);
    let audio = &offer.media[0];
    assert_eq!(audio.port, 40000);
    assert_eq!(audio.bandwidth[0].bwtype, "TIAS");
    assert_eq!(audio.bandwidth[0].bandwidth, 128000);
    assert_eq!(audio.candidates.len(), 2);
    assert!(audio.candidates[1].starts_with("candidate:2 1 tcp "));
    assert!(audio.end_of_candidates);
    assert_eq!(
        offer.ice_credentials(audio),
        Some(("sfuUfrag01", "sfuPasswordPasswordPassword1"))
    );
    let opus = audio.payload(111).unwrap();
    assert_eq!(
        (opus.fmtp.usedtx, opus.fmtp.sprop_stereo),
        (Some(true), Some(true))
    );

    let a = answer_all(&offer, Direction::SendRecv);
    assert_eq!(a[0].direction, Some(Direction::RecvOnly));
    assert_eq!(pts(&a[0]), [111]);
    assert_eq!(pts(&a[1]), [100, 101, 107, 108]);
    // No level asymmetry on the offer: our level 3.1 is lower than the offered 4.2.
    assert_eq!(
        a[1].payload(107)
            .unwrap()
            .fmtp
            .profile_level_id
            .unwrap()
            .to_string(),
        "42e01f"
    );
    assert_eq!(a[1].payload(107).unwrap().rtcp_fb, ["nack", "nack pli"]);
    assert_eq!(
        ext_ids(&a[1]),
        [
            (3, EXT_TRANSPORT_CC),
            (4, EXT_MID),
            (12, EXT_ABS_CAPTURE_TIME)
        ]
    );
    assert!(a[1].candidates.is_empty() && !a[1].end_of_candidates);
    let n = negotiate_from_offer(&offer.media[1], &a[1]).unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.remote_ssrcs, [22222222, 22222223, 33333333, 33333334]);
    assert_eq!(
        n.remote_rtx_ssrcs,
        [(22222222, 22222223), (33333333, 33333334)]
    );
    assert_eq!(n.remote_msid.as_ref().unwrap().stream_id, "peer1");
    assert_eq!(
        n.extensions,
        [
            (3, EXT_TRANSPORT_CC.to_string()),
            (4, EXT_MID.to_string()),
            (12, EXT_ABS_CAPTURE_TIME.to_string())
        ]
    );
    assert_eq!(a[2].max_message_size, Some(65536));
}

#[test]
fn rejected_sections() {
    let codecs = LocalCodecs::default();
    let exts = supported_extensions();
    let text = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 100 101\r\na=mid:v\r\na=rtpmap:100 H265/90000\r\n\
        a=rtpmap:101 rtx/90000\r\na=fmtp:101 apt=100\r\n\
        m=audio 9 RTP/AVP 0\r\na=mid:plain\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:off\r\na=rtpmap:111 opus/48000/2\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:b\r\na=bundle-only\r\na=rtpmap:111 opus/48000/2\r\n\
        m=text 9 UDP/TLS/RTP/SAVPF 98\r\na=mid:t\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:mono\r\na=rtpmap:111 opus/48000\r\n";
    let sd = SessionDescription::parse(text).unwrap();
    let a: Vec<_> = sd
        .media
        .iter()
        .map(|m| answer_media(m, &codecs, &exts, Direction::SendRecv))
        .collect();
    let ports: Vec<_> = a.iter().map(|m| m.port).collect();
    assert_eq!(ports, [0, 0, 0, 9, 0, 0]);
    let mids: Vec<_> = a.iter().map(|m| m.mid.as_deref().unwrap()).collect();
    assert_eq!(mids, ["v", "plain", "off", "b", "t", "mono"]);
    assert_eq!(a[0].formats, ["100", "101"]);
    assert!(a[0].payloads.is_empty() && a[0].direction.is_none());
    assert_eq!(pts(&a[3]), [111]);
    assert_eq!(bundle_group(&a).mids, ["b"]);
    let n = negotiate_from_offer(&sd.media[0], &a[0]).unwrap();
    assert!(n.rejected);
    assert_eq!(n.direction, Direction::Inactive);
    assert!(n.payloads.is_empty());
}

#[test]
fn offer_answer_accept_round_trip() {
    let codecs = LocalCodecs::default();
    let sender = LocalSender {
        cname: "cn".into(),
        stream_id: "s".into(),
        track_id: "t".into(),
        ssrc: Some(11),
        rtx_ssrc: Some(12),
        rids: vec![],
    };
    let offer = offer_media(
        "1",
        SectionKind::Media(MediaKind::Video),
        Direction::SendRecv,
        &codecs,
        &default_extensions(&SectionKind::Media(MediaKind::Video)),
        Some(&sender),
    );
    assert_eq!(pts(&offer), [96, 97, 98, 99, 102, 103, 104, 105, 45, 46]);
    let text = offer.to_string();
    assert!(text.starts_with("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 104 105 45 46\r\n"));
    assert!(text.contains("a=ssrc-group:FID 11 12\r\n"));
    assert!(text.contains("a=ssrc:12 msid:s t\r\n"));
    assert!(text.contains(
        "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"
    ));
    assert!(text.contains(
        "a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\n"
    ));
    assert!(text.contains("a=fmtp:98 profile-id=0\r\n"));
    assert!(text.contains("a=rtcp-fb:96 nack pli\r\n"));

    // A remote that only supports VP8 and H264 CB, and wants to only receive.
    let mut remote = LocalCodecs::default();
    remote.video.retain(|c| matches!(c.payload.pt, 96 | 102));
    remote.video[1].payload.fmtp.profile_level_id = Some(ProfileLevelId::parse("42e015").unwrap());
    remote.video[1].payload.fmtp.level_asymmetry_allowed = None;
    let mut answer = answer_media(
        &offer,
        &remote,
        &supported_extensions(),
        Direction::RecvOnly,
    );
    assert_eq!(answer.direction, Some(Direction::RecvOnly));
    assert_eq!(pts(&answer), [96, 97, 102, 103]);
    // No level asymmetry on the answerer: the lower level is used.
    assert_eq!(
        answer
            .payload(102)
            .unwrap()
            .fmtp
            .profile_level_id
            .unwrap()
            .to_string(),
        "42e015"
    );
    answer.ssrcs.push(SsrcAttribute {
        ssrc: 99,
        attribute: "cname".into(),
        value: Some("remote".into()),
    });
    let n = accept_answer_media(&offer, &answer).unwrap();
    assert_eq!(n.mid, "1");
    assert_eq!(n.direction, Direction::SendOnly);
    assert_eq!(
        n.payloads.iter().map(|p| p.pt).collect::<Vec<_>>(),
        [96, 102]
    );
    assert_eq!(n.rtx, [(96, 97), (102, 103)]);
    assert_eq!(n.extensions.len(), 8); // every supported one but audio-level
    assert_eq!(n.remote_ssrcs, [99]);
    assert_eq!(n.remote_cname.as_deref(), Some("remote"));
    assert!(n.rtcp_mux && n.rtcp_rsize);

    // Simulcast offer: the answer receives the RIDs; we then send them.
    let sim_sender = LocalSender {
        rids: vec!["lo".into(), "hi".into()],
        ssrc: None,
        rtx_ssrc: None,
        ..sender
    };
    let offer = offer_media(
        "2",
        SectionKind::Media(MediaKind::Video),
        Direction::SendOnly,
        &codecs,
        &default_extensions(&SectionKind::Media(MediaKind::Video)),
        Some(&sim_sender),
    );
    assert!(offer.to_string().contains("a=simulcast:send lo;hi\r\n"));
    let answer = answer_media(
        &offer,
        &codecs,
        &supported_extensions(),
        Direction::SendRecv,
    );
    assert_eq!(answer.direction, Some(Direction::RecvOnly));
    assert!(answer.to_string().contains("a=simulcast:recv lo;hi\r\n"));
    let n = accept_answer_media(&offer, &answer).unwrap();
    assert_eq!(n.local_rids, ["lo", "hi"]);
    assert!(n.remote_rids.is_empty());
    assert_eq!(n.direction, Direction::SendOnly);
}

#[test]
fn accept_answer_errors() {
    let codecs = LocalCodecs::default();
    let offer = offer_media(
        "a",
        SectionKind::Media(MediaKind::Audio),
        Direction::SendRecv,
        &codecs,
        &[],
        None,
    );
    let mut answer = answer_media(&offer, &codecs, &[], Direction::SendRecv);
    assert!(accept_answer_media(&offer, &answer).is_ok());
    answer.mid = Some("b".into());
    assert_eq!(
        accept_answer_media(&offer, &answer),
        Err(JsepError::MidMismatch {
            offer: "a".into(),
            answer: "b".into()
        })
    );
    answer.mid = Some("a".into());
    answer.payloads[0].pt = 100;
    assert_eq!(
        accept_answer_media(&offer, &answer),
        Err(JsepError::UnofferedPayload(100))
    );
    answer.payloads.clear();
    assert_eq!(
        accept_answer_media(&offer, &answer),
        Err(JsepError::NoCodec)
    );
    answer.kind = SectionKind::Media(MediaKind::Video);
    assert_eq!(
        accept_answer_media(&offer, &answer),
        Err(JsepError::KindMismatch)
    );
    let mut o2 = offer.clone();
    o2.mid = None;
    answer.mid = None;
    assert_eq!(
        accept_answer_media(&o2, &answer),
        Err(JsepError::MissingMid)
    );
    let app = offer_media(
        "d",
        SectionKind::Application,
        Direction::SendRecv,
        &codecs,
        &[],
        None,
    );
    let app_answer = answer_media(&app, &codecs, &[], Direction::SendRecv);
    let n = accept_answer_media(&app, &app_answer).unwrap();
    assert!(!n.rejected);
    assert_eq!(n.remote_sctp_port, Some(5000));
    assert_eq!(n.remote_max_message_size, Some(262144));
}

fn offered_codec() -> impl Strategy<Value = PayloadType> {
    let h264 = (
        prop_oneof![
            Just("42e01f"),
            Just("42001f"),
            Just("4d001f"),
            Just("64001f"),
            Just("42e034"),
            Just("f4001f")
        ],
        proptest::option::of(0u8..2),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(plid, pm, asym)| {
            let mut p = PayloadType::new(0, Codec::H264, 90000, None);
            p.fmtp.profile_level_id = ProfileLevelId::parse(plid).ok();
            p.fmtp.packetization_mode = pm;
            p.fmtp.level_asymmetry_allowed = asym;
            p
        });
    prop_oneof![
        proptest::option::of(1u16..3).prop_map(|ch| PayloadType::new(0, Codec::Opus, 48000, ch)),
        Just(PayloadType::new(0, Codec::Vp8, 90000, None)),
        proptest::option::of(0u8..3).prop_map(|id| {
            let mut p = PayloadType::new(0, Codec::Vp9, 90000, None);
            p.fmtp.profile_id = id;
            p
        }),
        h264,
        Just(PayloadType::new(0, Codec::Av1, 90000, None)),
        Just(PayloadType::new(0, Codec::Red, 90000, None)),
        Just(PayloadType::new(0, Codec::Pcmu, 8000, None)),
        any::<u8>().prop_map(|apt| {
            let mut p = PayloadType::new(0, Codec::Rtx, 90000, None);
            p.fmtp.apt = Some(apt % 128);
            p
        }),
    ]
}

fn offered_section() -> impl Strategy<Value = MediaSection> {
    (
        prop_oneof![
            Just(SectionKind::Media(MediaKind::Audio)),
            Just(SectionKind::Media(MediaKind::Video))
        ],
        prop::collection::btree_set(0u8..128, 0..8),
        prop::collection::vec(offered_codec(), 8),
        proptest::option::of(prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive)
        ]),
        prop::collection::vec((any::<bool>(), prop::collection::vec(0u8..128, 0..2)), 0..3),
        prop_oneof![Just(0u16), Just(9u16)],
        any::<bool>(),
    )
        .prop_map(|(kind, pts, codecs, direction, rids, port, sim)| {
            let mut m = MediaSection::new(kind, port, "UDP/TLS/RTP/SAVPF");
            m.mid = Some("m".into());
            m.direction = direction;
            m.extmaps = default_extensions(&SectionKind::Media(MediaKind::Video))
                .into_iter()
                .map(|(id, uri)| ExtMap {
                    id,
                    direction: None,
                    uri,
                    attributes: None,
                })
                .collect();
            let payloads = pts
                .into_iter()
                .zip(codecs)
                .map(|(pt, mut p)| {
                    p.pt = pt;
                    p.rtcp_fb = vec!["nack".into(), "goog-remb".into()];
                    p
                })
                .collect();
            m.set_payloads(payloads);
            m.rids = rids
                .into_iter()
                .enumerate()
                .map(|(i, (send, payloads))| Rid {
                    id: format!("r{i}"),
                    direction: if send {
                        RidDirection::Send
                    } else {
                        RidDirection::Recv
                    },
                    payloads,
                    restrictions: Vec::new(),
                })
                .collect();
            if sim && !m.rids.is_empty() {
                let list = |d: RidDirection| -> Vec<Vec<SimulcastRid>> {
                    m.rids
                        .iter()
                        .filter(|r| r.direction == d)
                        .map(|r| {
                            vec![SimulcastRid {
                                id: r.id.clone(),
                                paused: false,
                            }]
                        })
                        .collect()
                };
                m.simulcast = Some(Simulcast {
                    send: list(RidDirection::Send),
                    recv: list(RidDirection::Recv),
                });
            }
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_offers_answer_consistently(
        offer in offered_section(),
        want in prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive)
        ],
    ) {
        let codecs = LocalCodecs::default();
        let answer = answer_media(&offer, &codecs, &supported_extensions(), want);
        prop_assert_eq!(&answer.mid, &offer.mid);
        let text = answer.to_string();
        prop_assert!(text.ends_with("\r\n"));
        if answer.port == 0 {
            prop_assert!(answer.payloads.is_empty());
            let n = negotiate_from_offer(&offer, &answer).unwrap();
            prop_assert!(n.rejected);
            return Ok(());
        }
        let dir = answer.direction.unwrap();
        let offered = offer.direction.unwrap_or_default();
        prop_assert!(!dir.can_send() || (offered.can_recv() && want.can_send()));
        prop_assert!(!dir.can_recv() || (offered.can_send() && want.can_recv()));
        for p in &answer.payloads {
            let o = offer.payload(p.pt);
            prop_assert!(o.is_some(), "answer pt {} not offered", p.pt);
            if p.codec == Codec::Rtx {
                let apt = p.fmtp.apt.unwrap();
                prop_assert!(answer.payloads.iter().any(|x| x.pt == apt && x.codec != Codec::Rtx));
                prop_assert_eq!(o.unwrap().fmtp.apt, Some(apt));
            } else {
                prop_assert!(codec_matches(o.unwrap(), p));
                prop_assert!(codecs.video.iter().chain(&codecs.audio).any(|c| codec_matches(&c.payload, p)));
            }
        }
        for r in &answer.rids {
            prop_assert!(offer.rids.iter().any(|o| o.id == r.id && o.direction == r.direction.reverse()));
        }
        let n = negotiate_from_offer(&offer, &answer).unwrap();
        prop_assert_eq!(n.direction, dir);
        prop_assert!(!n.payloads.is_empty());
        let n2 = accept_answer_media(&offer, &answer).unwrap();
        prop_assert_eq!(n2.direction, dir.reverse());
        prop_assert_eq!(n2.payloads, n.payloads);
        let reparsed = crate::sdp::SessionDescription::parse(
            &format!("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n{text}"),
        ).unwrap();
        prop_assert_eq!(&reparsed.media[0], &answer);
    }
}

fn answer_audio_with(offer: &MediaSection, red: OpusRed) -> MediaSection {
    let codecs = LocalCodecs::with_opus_red(red);
    answer_media(offer, &codecs, &supported_extensions(), Direction::SendRecv)
}

#[test]
fn opus_red_answer_follows_the_policy() {
    let offer = fixture("chromium-156-av-datachannel.sdp");
    let audio = &offer.media[0];
    let prefer = answer_audio_with(audio, OpusRed::Prefer);
    assert_eq!(pts(&prefer), [63, 111]);
    assert_eq!(prefer.payloads[0].codec, Codec::Red);
    assert_eq!(prefer.payloads[0].channels, Some(2));
    assert_eq!(prefer.payloads[0].fmtp.to_string(), "111/111");
    let n = negotiate_from_offer(audio, &prefer).unwrap();
    assert_eq!(n.payloads[0].codec, Codec::Red);
    assert_eq!(pts(&answer_audio_with(audio, OpusRed::Accept)), [111, 63]);
    assert_eq!(pts(&answer_audio_with(audio, OpusRed::Off)), [111]);
    assert_eq!(pts(&answer_all(&offer, Direction::SendRecv)[0]), [111]);
}

#[test]
fn opus_red_answer_names_the_offered_opus_pt() {
    let mut offer = fixture("chromium-156-av-datachannel.sdp").media[0].clone();
    // The offerer numbers Opus 109 and RED 100 (blocks 109).
    for p in &mut offer.payloads {
        match p.codec {
            Codec::Opus => p.pt = 109,
            Codec::Red => {
                p.pt = 100;
                p.fmtp.unknown = vec![("109/109".into(), None)];
            }
            _ => {}
        }
    }
    let a = answer_audio_with(&offer, OpusRed::Prefer);
    assert_eq!(&pts(&a)[..2], [100, 109]);
    assert_eq!(a.payloads[0].fmtp.to_string(), "109/109");
    // RED whose blocks are not an answered Opus is not answered.
    for (fmtp, why) in [
        ("96/96", "not opus"),
        ("109/0", "mixed"),
        ("x", "malformed"),
    ] {
        let mut o = offer.clone();
        for p in &mut o.payloads {
            if p.codec == Codec::Red {
                p.fmtp.unknown = vec![(fmtp.into(), None)];
            }
        }
        let a = answer_audio_with(&o, OpusRed::Prefer);
        assert!(a.payloads.iter().all(|p| p.codec != Codec::Red), "{why}");
    }
}

#[test]
fn opus_red_offer_and_answer_round_trip() {
    let codecs = LocalCodecs::with_opus_red(OpusRed::Prefer);
    let red = codecs.payloads(&SectionKind::Media(MediaKind::Audio));
    assert_eq!(red[0].codec, Codec::Red);
    assert_eq!(red_primary_pt(&red[0]), Some(111));
    assert_eq!(red[0].fmtp.to_string(), "111/111");
}
