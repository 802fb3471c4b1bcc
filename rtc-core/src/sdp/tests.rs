//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
//! Parser/writer tests: fixtures, malformed input, and a generated round trip.

use super::*;
use proptest::prelude::*;

pub(crate) fn fixtures() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdp");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixture dir exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sdp"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(out.len() >= 3, "expected the fixture offers");
    out
}

pub(crate) fn fixture(name: &str) -> SessionDescription {
    let (_, text) = fixtures()
        .into_iter()
        .find(|(n, _)| n == name)
        .expect("fixture present");
    SessionDescription::parse(&text).unwrap()
}

#[test]
fn every_fixture_parses_and_round_trips() {
    for (name, text) in fixtures() {
        let sd = SessionDescription::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = sd.to_sdp();
        assert!(written.ends_with("\r\n"), "{name}");
        assert!(!written.contains("\n\n") && !written.replace("\r\n", "").contains('\n'));
        let again = SessionDescription::parse(&written).unwrap();
        assert_eq!(sd, again, "{name}");
        // CRLF input gives the same model as LF input.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(SessionDescription::parse(&crlf).unwrap(), sd, "{name}");
        assert!(!sd.media.is_empty(), "{name}");
    }
}

#[test]
fn chrome_offer_fields() {
    let sd = fixture("chrome_offer_simulcast_datachannel.sdp");
    assert_eq!(sd.origin.username, "-");
    assert_eq!(sd.origin.session_id, 4611731400430051336);
    assert_eq!(sd.origin.session_version, 2);
    assert_eq!(sd.origin.unicast_address, "127.0.0.1");
    assert_eq!(sd.bundle_mids().unwrap(), ["0", "1", "2"]);
    assert!(sd.extmap_allow_mixed);
    let ms = sd.msid_semantic.as_ref().unwrap();
    assert_eq!(ms.semantic, "WMS");
    assert_eq!(ms.ids.len(), 1);
    assert_eq!(sd.media.len(), 3);

    let audio = &sd.media[0];
    assert_eq!(audio.kind, SectionKind::Media(MediaKind::Audio));
    assert_eq!(audio.port, 9);
    assert!(audio.is_rtp());
    assert_eq!(audio.mid.as_deref(), Some("0"));
    assert_eq!(audio.ice_ufrag.as_deref(), Some("Yq3v"));
    assert_eq!(audio.ice_options, ["trickle"]);
    assert_eq!(audio.setup, Some(Setup::ActPass));
    let fp = &audio.fingerprints[0];
    assert_eq!(fp.algorithm, "sha-256");
    assert_eq!(fp.bytes.len(), 32);
    assert_eq!(fp.bytes[0], 0x4F);
    assert_eq!(fp.bytes[31], 0x93);
    assert_eq!(audio.rtcp.as_ref().unwrap().port, 9);
    assert!(audio.rtcp_mux && audio.rtcp_rsize);
    assert_eq!(audio.direction, Some(Direction::SendRecv));
    let opus = audio.payload(111).unwrap();
    assert_eq!(opus.codec, Codec::Opus);
    assert_eq!((opus.clock_rate, opus.channels), (48000, Some(2)));
    assert_eq!(opus.fmtp.minptime, Some(10));
    assert_eq!(opus.fmtp.useinbandfec, Some(true));
    assert_eq!(opus.rtcp_fb, ["transport-cc"]);
    assert_eq!(audio.payload(13).unwrap().codec, Codec::Other("CN".into()));
    assert_eq!(
        audio.payload(63).unwrap().fmtp.unknown,
        [("111/111".to_string(), None)]
    );
    assert_eq!(audio.payloads.len(), 8);
    assert_eq!(audio.extmaps.len(), 4);
    assert_eq!(audio.extmaps[2].id, 3);
    assert_eq!(
        audio.ssrc_attribute(3735928559, "cname"),
        Some("Hk2lT0bXq9Zp+e4R")
    );
    assert_eq!(
        audio.msids[0].track_id.as_deref(),
        Some("1d0c5e4a-7f39-4b8e-9d6a-2f1e0c9b8a77")
    );
    assert!(audio.unknown.is_empty(), "{:?}", audio.unknown);

    let video = &sd.media[1];
    assert_eq!(video.direction, Some(Direction::SendOnly));
    assert_eq!(video.formats.len(), 23);
    assert_eq!(video.payloads.len(), 23);
    let h = video.payload(106).unwrap();
    assert_eq!(h.fmtp.packetization_mode, Some(1));
    assert_eq!(h.fmtp.profile_level_id.unwrap().to_string(), "42e01f");
    assert_eq!(h.rtcp_fb.len(), 5);
    assert_eq!(video.payload(107).unwrap().fmtp.apt, Some(106));
    assert_eq!(video.payload(100).unwrap().fmtp.profile_id, Some(2));
    let av1 = video.payload(45).unwrap();
    assert_eq!(
        (av1.fmtp.profile, av1.fmtp.level_idx, av1.fmtp.tier),
        (Some(0), Some(5), Some(0))
    );
    assert_eq!(video.rids.len(), 3);
    assert_eq!(video.rids[1].id, "h");
    assert_eq!(video.rids[1].direction, RidDirection::Send);
    let sim = video.simulcast.as_ref().unwrap();
    assert_eq!(sim.send.len(), 3);
    assert!(sim.recv.is_empty());
    assert_eq!(sim.send[2][0].id, "f");

    let app = &sd.media[2];
    assert_eq!(app.kind, SectionKind::Application);
    assert!(app.is_sctp());
    assert_eq!(app.formats, ["webrtc-datachannel"]);
    assert_eq!(app.sctp_port, Some(5000));
    assert_eq!(app.max_message_size, Some(262144));
    assert!(app.payloads.is_empty());
}

#[test]
fn firefox_offer_fields() {
    let sd = fixture("firefox_offer.sdp");
    assert_eq!(sd.origin.username, "mozilla...THIS_IS_SDPARTA-128.0");
    assert_eq!(sd.origin.session_version, 0);
    assert_eq!(sd.direction, Some(Direction::SendRecv));
    assert_eq!(sd.fingerprints.len(), 1);
    assert_eq!(sd.ice_options, ["trickle"]);
    assert_eq!(sd.msid_semantic.as_ref().unwrap().ids, ["*"]);
    let audio = &sd.media[0];
    assert!(audio.fingerprints.is_empty());
    assert_eq!(sd.fingerprints_for(audio).len(), 1);
    assert_eq!(
        sd.ice_credentials(audio),
        Some(("a1b2c3d4", "6d1e5b0d3c2f4a8b9e7f6a5b4c3d2e1f"))
    );
    assert_eq!(audio.extmaps[1].direction, Some(Direction::RecvOnly));
    let opus = audio.payload(109).unwrap();
    assert_eq!(opus.fmtp.stereo, Some(true));
    assert_eq!(
        opus.fmtp.unknown,
        [("maxplaybackrate".to_string(), Some("48000".to_string()))]
    );
    assert_eq!(audio.payload(9).unwrap().channels, Some(1));
    assert_eq!(audio.payload(101).unwrap().fmtp.unknown[0].0, "0-15");
    let video = &sd.media[1];
    // fmtp lines come before rtpmap lines in Firefox offers.
    assert_eq!(video.payload(124).unwrap().fmtp.apt, Some(120));
    assert_eq!(video.payload(97).unwrap().fmtp.packetization_mode, None);
    assert_eq!(video.payload(122).unwrap().rtcp_fb.len(), 5);
    assert_eq!(video.ssrc_groups[0].semantics, "FID");
    assert_eq!(video.ssrc_groups[0].ssrcs, [3016547832, 1983745621]);
    assert_eq!(
        video.payloads.iter().map(|p| p.pt).collect::<Vec<_>>(),
        [120, 124, 121, 125, 126, 127, 97, 98, 123, 122, 119]
    );
    assert!(video.unknown.is_empty());
    assert_eq!(sd.media[2].max_message_size, Some(1073741823));
}

#[test]
fn written_text_shape() {
    let sd = fixture("chrome_offer_fid.sdp");
    let text = sd.to_sdp();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "v=0");
    assert_eq!(lines[1], "o=- 8127368716292431937 2 IN IP4 127.0.0.1");
    assert_eq!(lines[2], "s=-");
    assert_eq!(lines[3], "t=0 0");
    assert!(lines.contains(&"a=group:BUNDLE 0 1"));
    assert!(lines.contains(&"a=msid-semantic:WMS stream0"));
    assert!(lines.contains(&"a=fmtp:111 minptime=10;useinbandfec=1"));
    assert!(lines.contains(&"a=ssrc-group:FID 2002 2003"));
    assert!(lines.contains(&"a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F"));
    assert!(lines.contains(&"a=candidate:2119119331 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1 network-cost 10"));
    assert!(lines.contains(
        &"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
    ));
    assert_eq!(lines.last(), Some(&""));
}

#[test]
fn unknown_attributes_preserved_in_order() {
    let text = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=x-foo:bar baz\na=x-flag\n\
                m=video 9 UDP/TLS/RTP/SAVPF 96 100\na=x-one:1\na=rtcp-fb:* nack\n\
                a=rtpmap:96 VP8/90000\na=fmtp:100 x=1\na=x-two\na=rtcp-fb:100 nack\n";
    let sd = SessionDescription::parse(text).unwrap();
    assert_eq!(
        sd.unknown,
        [
            Attribute {
                name: "x-foo".into(),
                value: Some("bar baz".into())
            },
            Attribute {
                name: "x-flag".into(),
                value: None
            },
        ]
    );
    let names: Vec<_> = sd.media[0]
        .unknown
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["x-one", "rtcp-fb", "x-two", "fmtp", "rtcp-fb"]);
    assert_eq!(sd.media[0].payloads.len(), 1);
    let again = SessionDescription::parse(&sd.to_sdp()).unwrap();
    assert_eq!(again, sd);
}

#[test]
fn malformed_inputs_report_line_and_reason() {
    use SdpErrorKind as K;
    let base = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    let cases: Vec<(String, usize, SdpErrorKind)> = vec![
        (String::new(), 1, K::Empty),
        ("\n\n".into(), 1, K::Empty),
        ("v=1\n".into(), 1, K::BadVersion),
        (
            "o=- 1 2 IN IP4 x\n".into(),
            1,
            K::UnexpectedLine { expected: 'v' },
        ),
        ("v=0\ns=-\n".into(), 2, K::UnexpectedLine { expected: 'o' }),
        ("v=0\no=- x 2 IN IP4 1.2.3.4\n".into(), 2, K::BadOrigin),
        ("v=0\no=- 1 2 IN IP4\n".into(), 2, K::BadOrigin),
        (
            "v=0\no=- 1 2 IN IP4 a\n".into(),
            3,
            K::UnexpectedLine { expected: 's' },
        ),
        (
            "v=0\no=- 1 2 IN IP4 a\ns=-\n".into(),
            4,
            K::MissingLine('t'),
        ),
        (
            "v=0\no=- 1 2 IN IP4 a\ns=-\nm=audio 9 RTP/AVP 0\n".into(),
            4,
            K::MissingLine('t'),
        ),
        (format!("{base}garbage\r\n"), 5, K::NotTypeValue),
        (format!("{base}x=1\r\n"), 5, K::UnknownLineType('x')),
        (format!("{base}t=now\r\n"), 5, K::BadTiming),
        (format!("{base}c=IN IP4\r\n"), 5, K::BadConnection),
        (format!("{base}b=AS\r\n"), 5, K::BadBandwidth),
        (
            format!("{base}a=setup:client\r\n"),
            5,
            K::BadAttribute("setup"),
        ),
        (
            format!("{base}a=fingerprint:sha-256 AB:C\r\n"),
            5,
            K::BadAttribute("fingerprint"),
        ),
        (
            format!("{base}m=audio nine UDP/TLS/RTP/SAVPF 111\r\n"),
            5,
            K::BadMediaLine,
        ),
        (format!("{base}m=audio 9\r\n"), 5, K::BadMediaLine),
        (
            format!("{base}m=audio 9 RTP/AVP 0\r\na=rtpmap:200 foo/8000\r\n"),
            6,
            K::BadAttribute("rtpmap"),
        ),
        (
            format!("{base}m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"),
            6,
            K::BadAttribute("rtpmap"),
        ),
        (
            format!("{base}m=audio 9 RTP/AVP 0\r\na=extmap:x urn:a\r\n"),
            6,
            K::BadAttribute("extmap"),
        ),
        (
            format!("{base}m=video 9 RTP/AVP 0\r\na=rid:h both\r\n"),
            6,
            K::BadAttribute("rid"),
        ),
        (
            format!("{base}m=video 9 RTP/AVP 0\r\na=simulcast:send\r\n"),
            6,
            K::BadAttribute("simulcast"),
        ),
        (
            format!("{base}m=video 9 RTP/AVP 0\r\na=ssrc:12x cname:a\r\n"),
            6,
            K::BadAttribute("ssrc"),
        ),
        (
            format!("{base}m=video 9 RTP/AVP 0\r\na=ssrc-group:FID 1 b\r\n"),
            6,
            K::BadAttribute("ssrc-group"),
        ),
        (
            format!("{base}m=application 9 UDP/DTLS/SCTP x\r\na=sctp-port:99999\r\n"),
            6,
            K::BadAttribute("sctp-port"),
        ),
        (
            format!("{base}m=audio 9 RTP/AVP 0\r\nt=0 0\r\n"),
            6,
            K::UnexpectedLine { expected: 'a' },
        ),
        (
            format!("{base}m=audio 9 RTP/AVP 0\r\na=mid\r\n"),
            6,
            K::BadAttribute("mid"),
        ),
    ];
    for (input, line, reason) in cases {
        let e = SessionDescription::parse(&input).expect_err(&input);
        assert_eq!((e.line, &e.reason), (line, &reason), "{input:?}");
        if e.reason != K::Empty && e.line <= input.lines().count() {
            let expected_text = input.lines().nth(line - 1).unwrap().trim_end();
            assert_eq!(e.text, expected_text);
        }
        assert!(e.to_string().contains(&format!("line {line}")));
    }
}

#[test]
fn direction_and_session_helpers() {
    use Direction::*;
    assert_eq!(SendOnly.reverse(), RecvOnly);
    assert_eq!(RecvOnly.reverse(), SendOnly);
    assert_eq!(SendRecv.reverse(), SendRecv);
    assert_eq!(Inactive.reverse(), Inactive);
    assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
    assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
    assert_eq!(Direction::from_name("sendonly"), Some(SendOnly));
    assert_eq!(Direction::from_name("send"), None);
    assert_eq!(Setup::from_name("ACTIVE"), Some(Setup::Active));

    let text = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\na=ice-ufrag:sess\na=ice-pwd:spwd\n\
                a=setup:passive\na=recvonly\na=ice-lite\n\
                m=audio 0 UDP/TLS/RTP/SAVPF 0\na=mid:a\na=ice-ufrag:med\na=bundle-only\n\
                m=audio 0 UDP/TLS/RTP/SAVPF 8\na=mid:b\na=setup:active\na=inactive\n";
    let sd = SessionDescription::parse(text).unwrap();
    assert!(sd.ice_lite);
    let (a, b) = (&sd.media[0], &sd.media[1]);
    assert_eq!(sd.ice_credentials(a), Some(("med", "spwd")));
    assert_eq!(sd.ice_credentials(b), Some(("sess", "spwd")));
    assert_eq!(sd.setup_for(a), Some(Setup::Passive));
    assert_eq!(sd.setup_for(b), Some(Setup::Active));
    assert_eq!(sd.direction_for(a), RecvOnly);
    assert_eq!(sd.direction_for(b), Inactive);
    assert!(!a.is_rejected() && b.is_rejected());
    assert_eq!(a.payload(0).unwrap().codec, Codec::Pcmu);
    assert_eq!(b.payload(8).unwrap().clock_rate, 8000);
    assert_eq!(sd.media_by_mid("b"), Some(b));
    assert!(sd.bundle_mids().is_none());
}

fn tok() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9_.+-]{0,7}"
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    prop_oneof![
        Just(Setup::ActPass),
        Just(Setup::Active),
        Just(Setup::Passive),
        Just(Setup::HoldConn)
    ]
}

fn connection() -> impl Strategy<Value = Connection> {
    (prop_oneof![Just("IP4"), Just("IP6")], tok()).prop_map(|(a, addr)| Connection {
        net_type: "IN".into(),
        addr_type: a.into(),
        address: addr,
    })
}

fn unknown_attr() -> impl Strategy<Value = Attribute> {
    (
        "x-[a-z]{1,6}",
        opt("[a-zA-Z0-9:/._-]{0,10}( [a-z0-9]{1,4})?"),
    )
        .prop_map(|(name, value)| Attribute { name, value })
}

fn fingerprint() -> impl Strategy<Value = Fingerprint> {
    (
        prop_oneof![Just("sha-256"), Just("sha-1"), Just("sha-512")],
        prop::collection::vec(any::<u8>(), 1..40),
    )
        .prop_map(|(a, bytes)| Fingerprint {
            algorithm: a.into(),
            bytes,
        })
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![
        Just(Codec::Opus),
        Just(Codec::Vp8),
        Just(Codec::Vp9),
        Just(Codec::H264),
        Just(Codec::Av1),
        Just(Codec::Rtx),
        Just(Codec::Red),
        Just(Codec::Ulpfec),
        Just(Codec::Flexfec),
        Just(Codec::TelephoneEvent),
        Just(Codec::G722),
        Just(Codec::Pcmu),
        Just(Codec::Pcma),
        "X[a-zA-Z0-9]{1,6}".prop_map(Codec::Other),
    ]
}

fn fmtp() -> impl Strategy<Value = FormatParams> {
    (
        (
            opt(any::<u32>()),
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(any::<bool>()),
            opt(any::<u32>()),
        ),
        (
            opt((any::<u8>(), any::<u8>(), any::<u8>())),
            opt(0u8..3),
            opt(any::<bool>()),
            opt(any::<u8>()),
            opt(any::<u8>()),
            opt(any::<u8>()),
        ),
        (
            opt(any::<u8>()),
            opt(any::<u8>()),
            opt(any::<u32>()),
            prop::collection::vec(("x[a-z]{0,5}", opt("[a-z0-9/-]{1,5}")), 0..3),
        ),
    )
        .prop_map(|(a, b, c)| FormatParams {
            minptime: a.0,
            useinbandfec: a.1,
            stereo: a.2,
            sprop_stereo: a.3,
            usedtx: a.4,
            maxaveragebitrate: a.5,
            profile_level_id: b.0.map(|(p, i, l)| ProfileLevelId {
                profile_idc: p,
                profile_iop: i,
                level_idc: l,
            }),
            packetization_mode: b.1,
            level_asymmetry_allowed: b.2,
            profile_id: b.3,
            profile: b.4,
            level_idx: b.5,
            tier: c.0,
            apt: c.1,
            repair_window: c.2,
            unknown: c.3,
        })
}

fn payloads() -> impl Strategy<Value = Vec<PayloadType>> {
    prop::collection::btree_set(0u8..128, 0..4).prop_flat_map(|pts| {
        let n = pts.len();
        (
            Just(pts),
            prop::collection::vec(
                (
                    codec(),
                    any::<u32>(),
                    opt(any::<u16>()),
                    fmtp(),
                    prop::collection::vec(
                        prop_oneof![
                            Just("nack".to_string()),
                            Just("nack pli".to_string()),
                            Just("ccm fir".to_string()),
                            Just("transport-cc".to_string()),
                        ],
                        0..3,
                    ),
                ),
                n,
            ),
        )
            .prop_map(|(pts, rest)| {
                pts.into_iter()
                    .zip(rest)
                    .map(
                        |(pt, (codec, clock_rate, channels, fmtp, rtcp_fb))| PayloadType {
                            pt,
                            codec,
                            clock_rate,
                            channels,
                            fmtp,
                            rtcp_fb,
                        },
                    )
                    .collect()
            })
    })
}

fn sim_list() -> impl Strategy<Value = Vec<Vec<SimulcastRid>>> {
    prop::collection::vec(
        prop::collection::vec(
            ("[a-z0-9]{1,3}", any::<bool>()).prop_map(|(id, paused)| SimulcastRid { id, paused }),
            1..3,
        ),
        0..3,
    )
}

pub(crate) fn media() -> impl Strategy<Value = MediaSection> {
    let head = (
        prop_oneof![
            Just(SectionKind::Media(MediaKind::Audio)),
            Just(SectionKind::Media(MediaKind::Video)),
            Just(SectionKind::Application),
            "x[a-z]{1,5}".prop_map(SectionKind::Other),
        ],
        any::<u16>(),
        opt(any::<u16>()),
        prop_oneof![
            Just("UDP/TLS/RTP/SAVPF"),
            Just("UDP/DTLS/SCTP"),
            Just("RTP/AVP")
        ],
        payloads(),
        opt(tok()),
        opt(connection()),
        prop::collection::vec(("[A-Z]{1,4}", any::<u64>()), 0..2),
    );
    let transport = (
        opt(tok()),
        opt(direction()),
        any::<(bool, bool, bool, bool, bool)>(),
        opt((any::<u16>(), opt(connection()))),
        opt(tok()),
        opt(tok()),
        prop::collection::vec(tok(), 0..3),
        prop::collection::vec(fingerprint(), 0..2),
        opt(setup()),
    );
    let rtp = (
        prop::collection::vec((tok(), opt(tok())), 0..2),
        prop::collection::vec(
            (
                1u16..300,
                opt(direction()),
                "urn:[a-z:.-]{1,12}",
                opt(tok()),
            ),
            0..3,
        ),
        prop::collection::vec(
            (
                "[a-z0-9]{1,3}",
                any::<bool>(),
                prop::collection::vec(0u8..128, 0..3),
                prop::collection::vec(("max-[a-z]{1,3}", opt("[0-9]{1,4}")), 0..2),
            ),
            0..3,
        ),
        opt((sim_list(), sim_list())),
        prop::collection::vec(
            ("[A-Z]{3}", prop::collection::vec(any::<u32>(), 0..3)),
            0..2,
        ),
        prop::collection::vec(
            (
                any::<u32>(),
                prop_oneof![Just("cname"), Just("msid"), Just("label")],
                opt("[a-z0-9]{1,5}( [a-z0-9]{1,5})?"),
            ),
            0..3,
        ),
    );
    let tail = (
        opt(any::<u16>()),
        opt(any::<u64>()),
        prop::collection::vec(
            "[0-9]{1,5} 1 udp [0-9]{1,6} 10.0.0.1 [0-9]{1,5} typ host",
            0..2,
        ),
        prop::collection::vec(unknown_attr(), 0..3),
    );
    (head, transport, rtp, tail).prop_map(|(h, t, r, tl)| {
        let mut m = MediaSection::new(h.0, h.1, h.3);
        m.port_count = h.2;
        if h.4.is_empty() {
            m.formats = vec!["webrtc-datachannel".into()];
        } else {
            m.set_payloads(h.4);
        }
        m.info = h.5;
        m.connection = h.6;
        m.bandwidth =
            h.7.into_iter()
                .map(|(bwtype, bandwidth)| Bandwidth { bwtype, bandwidth })
                .collect();
        m.mid = t.0;
        m.direction = t.1;
        (
            m.rtcp_mux,
            m.rtcp_rsize,
            m.extmap_allow_mixed,
            m.end_of_candidates,
            m.bundle_only,
        ) = t.2;
        m.rtcp = t.3.map(|(port, connection)| RtcpAttr { port, connection });
        m.ice_ufrag = t.4;
        m.ice_pwd = t.5;
        m.ice_options = t.6;
        m.fingerprints = t.7;
        m.setup = t.8;
        m.msids =
            r.0.into_iter()
                .map(|(stream_id, track_id)| Msid {
                    stream_id,
                    track_id,
                })
                .collect();
        m.extmaps =
            r.1.into_iter()
                .map(|(id, direction, uri, attributes)| ExtMap {
                    id,
                    direction,
                    uri,
                    attributes,
                })
                .collect();
        m.rids =
            r.2.into_iter()
                .map(|(id, send, payloads, restrictions)| Rid {
                    id,
                    direction: if send {
                        RidDirection::Send
                    } else {
                        RidDirection::Recv
                    },
                    payloads,
                    restrictions,
                })
                .collect();
        m.simulcast =
            r.3.map(|(send, recv)| Simulcast { send, recv })
                .filter(|s| !(s.send.is_empty() && s.recv.is_empty()));
        m.ssrc_groups =
            r.4.into_iter()
                .map(|(semantics, ssrcs)| SsrcGroup { semantics, ssrcs })
                .collect();
        m.ssrcs =
            r.5.into_iter()
                .map(|(ssrc, a, value)| SsrcAttribute {
                    ssrc,
                    attribute: a.into(),
                    value,
                })
                .collect();
        m.sctp_port = tl.0;
        m.max_message_size = tl.1;
        m.candidates = tl.2.into_iter().map(|c| format!("candidate:{c}")).collect();
        m.unknown = tl.3;
        m
    })
}

fn session() -> impl Strategy<Value = SessionDescription> {
    let head = (
        (tok(), any::<u64>(), any::<u64>(), connection()),
        tok(),
        opt(tok()),
        opt(connection()),
        (any::<u64>(), any::<u64>()),
    );
    let attrs = (
        prop::collection::vec(("[A-Z]{2,6}", prop::collection::vec(tok(), 0..3)), 0..2),
        any::<(bool, bool)>(),
        (opt(tok()), opt(tok()), prop::collection::vec(tok(), 0..2)),
        prop::collection::vec(fingerprint(), 0..2),
        opt(setup()),
        opt(direction()),
        opt(("WMS", prop::collection::vec(tok(), 0..2))),
        prop::collection::vec(unknown_attr(), 0..3),
    );
    (head, attrs, prop::collection::vec(media(), 0..3)).prop_map(|(h, a, media)| {
        let mut sd = SessionDescription::default();
        let (user, id, ver, c) = h.0;
        sd.origin = Origin {
            username: user,
            session_id: id,
            session_version: ver,
            net_type: c.net_type,
            addr_type: c.addr_type,
            unicast_address: c.address,
        };
        sd.session_name = h.1;
        sd.info = h.2;
        sd.connection = h.3;
        sd.timing = Timing {
            start: h.4.0,
            stop: h.4.1,
        };
        sd.groups =
            a.0.into_iter()
                .map(|(semantics, mids)| Group { semantics, mids })
                .collect();
        (sd.ice_lite, sd.extmap_allow_mixed) = a.1;
        (sd.ice_ufrag, sd.ice_pwd, sd.ice_options) = a.2;
        sd.fingerprints = a.3;
        sd.setup = a.4;
        sd.direction = a.5;
        sd.msid_semantic = a.6.map(|(s, ids)| MsidSemantic { semantic: s, ids });
        sd.unknown = a.7;
        sd.media = media;
        sd
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_parse_identity(sd in session()) {
        let text = sd.to_sdp();
        let parsed = SessionDescription::parse(&text);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
        prop_assert_eq!(parsed.unwrap(), sd, "{}", text);
    }

    #[test]
    fn parse_never_panics(s in "(([vosctmab]=[ -~]{0,30})?\r?\n){0,12}") {
        if let Ok(sd) = SessionDescription::parse(&s) {
            let again = SessionDescription::parse(&sd.to_sdp());
            prop_assert!(again.is_ok());
        }
    }
}

#[test]
fn section_kind_tokens() {
    for (token, kind) in [
        ("audio", SectionKind::Media(MediaKind::Audio)),
        ("video", SectionKind::Media(MediaKind::Video)),
        ("application", SectionKind::Application),
        ("text", SectionKind::Other("text".into())),
    ] {
        assert_eq!(SectionKind::from_name(token), kind);
        assert_eq!(kind.as_str(), token);
    }
    assert_eq!(
        SectionKind::from(MediaKind::Video).media(),
        Some(MediaKind::Video)
    );
    assert_eq!(SectionKind::Application.media(), None);
}
