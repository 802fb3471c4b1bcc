use super::*;

#[test]
fn candidate_check() {
    let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n";
    assert_eq!(non_loopback_candidate(sdp), None);
    let sdp = "a=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n\
               a=candidate:2 1 udp 2130706431 10.1.2.3 4001 typ host\r\n";
    assert_eq!(
        non_loopback_candidate(sdp),
        Some("10.1.2.3:4001".parse().unwrap())
    );
    assert_eq!(non_loopback_candidate("a=candidate:junk\r\n"), None);
}

#[test]
fn config_validation() {
    assert!(Config::default().validate().is_ok());
    let bad = [
        Config {
            threads: 0,
            ..Config::default()
        },
        Config {
            fps: 0,
            ..Config::default()
        },
        Config {
            ramp: f64::NAN,
            ..Config::default()
        },
        Config {
            audio_bytes: 5,
            ..Config::default()
        },
        Config {
            audio_period: Duration::from_millis(5),
            ..Config::default()
        },
        Config {
            audio_period: Duration::from_secs(3),
            ..Config::default()
        },
        Config {
            room_prefix: "a/b".into(),
            ..Config::default()
        },
        Config {
            verify_every: 0,
            ..Config::default()
        },
    ];
    for c in bad {
        assert!(
            matches!(c.validate(), Err(LoadgenError::Config(_))),
            "{c:?}"
        );
    }
}

#[test]
fn whip_refuses_remote_targets() {
    let c = Config {
        mode: Mode::Whip("http://192.0.2.1:8080".into()),
        ..Config::default()
    };
    assert!(matches!(run(&c), Err(LoadgenError::Config(_))));
}

#[test]
fn keyframe_spacing() {
    let c = Config {
        fps: 30,
        keyframe_interval: 2.0,
        ..Config::default()
    };
    assert_eq!(c.media().keyframe_every, 60);
}

#[test]
fn recv_checks_stand_flat_in_the_json_report() {
    let mut checks = RecvChecks {
        corrupt: 3,
        streams_expected: 4,
        ..RecvChecks::default()
    };
    checks.add(&RecvChecks {
        corrupt: 1,
        duplicates: 2,
        ..RecvChecks::default()
    });
    assert_eq!(
        (checks.corrupt, checks.duplicates, checks.streams_expected),
        (4, 2, 4)
    );
    let r = RecvCounts {
        checks,
        ..RecvCounts::default()
    };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["corrupt"], 4);
    assert_eq!(v["streams_expected"], 4);
    assert!(v.get("checks").is_none(), "{v}");
    let back: RecvCounts = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn verify_sampling_parses_one_in_n() {
    assert_eq!(parse_verify("1/16"), Ok(16));
    assert_eq!(parse_verify("1/1"), Ok(1));
    assert_eq!(parse_verify("8"), Ok(8));
    for bad in ["2/16", "1/0", "1/x", "", "1/99999"] {
        assert!(parse_verify(bad).is_err(), "{bad}");
    }
}

#[test]
fn simulcast_wants_the_control_back_end_and_video_only() {
    let sc = |mode: Mode, audio: bool| Config {
        mode,
        audio,
        simulcast: true,
        ..Config::default()
    };
    let control = || Mode::Control(PathBuf::from("/tmp/none.sock"));
    assert!(sc(control(), false).validate().is_ok());
    // Audio beside it, or a back-end that cannot set layer caps, is refused up front.
    assert!(matches!(
        sc(control(), true).validate(),
        Err(LoadgenError::Config(_))
    ));
    assert!(matches!(
        sc(Mode::InProcess { shards: 1 }, false).validate(),
        Err(LoadgenError::Config(_))
    ));
}

#[test]
fn simulcast_layer_rides_in_the_payload_trailer() {
    use super::payload::{Stamp, StreamKind, check, write_video};
    for layer in 0..3u8 {
        let s = Stamp {
            publisher: 3,
            kind: StreamKind::Video,
            keyframe: layer == 1,
            layer,
            seq: 9,
            send_ns: 5,
        };
        let mut buf = vec![0u8; 600];
        let n = write_video(&mut buf, 600, true, &s).expect("600 bytes fit");
        let got = check(&buf[..n]).expect("own payload checks");
        assert_eq!((got.layer, got.keyframe), (layer, layer == 1));
    }
}
