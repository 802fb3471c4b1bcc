//! Protocol round trips (serde) for every op, response and event, and request-line errors.

use std::collections::BTreeMap;

use control::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn direct() -> DirectParams {
    DirectParams {
        ice_ufrag: "abcd".into(),
        ice_pwd: "0123456789abcdef012345".into(),
        fingerprint: Fingerprint {
            algorithm: "sha-256".into(),
            value: "AB:CD:EF".into(),
        },
        remote_dtls_role: DtlsRole::Client,
        candidates: vec!["candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host".into()],
        ice_lite: false,
    }
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::SessionCreate(SessionCreate {
            setup: SessionSetup::Offer("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".into()),
            room: Some(RoomId("lobby".into())),
            shard: Some(ShardId(1)),
            reap_on_disconnect: true,
        }),
        Request::SessionCreate(SessionCreate {
            setup: SessionSetup::Direct(direct()),
            room: None,
            shard: None,
            reap_on_disconnect: false,
        }),
        Request::SessionClose(SessionRef {
            session: SessionId(7),
        }),
        Request::SessionStats(SessionRef {
            session: SessionId(u64::MAX),
        }),
        Request::RoomCreate(RoomRef {
            room: RoomId("a".into()),
        }),
        Request::RoomClose(RoomRef {
            room: RoomId("a".into()),
        }),
        Request::RoomList,
        Request::Publish(Publish {
            session: SessionId(1),
            room: RoomId("r".into()),
            tracks: None,
        }),
        Request::Publish(Publish {
            session: SessionId(1),
            room: RoomId("r".into()),
            tracks: Some(vec![TrackId("0".into()), TrackId("1".into())]),
        }),
        Request::Subscribe(Subscribe {
            subscriber: SessionId(2),
            publisher: SessionId(1),
            tracks: None,
        }),
        Request::Unsubscribe(Subscribe {
            subscriber: SessionId(2),
            publisher: SessionId(1),
            tracks: Some(vec![TrackId("v".into())]),
        }),
        Request::KeyframeRequest(KeyframeRequest {
            session: SessionId(1),
            track: Some(TrackId("1".into())),
        }),
        Request::TrackSetPreference(TrackPreference {
            session: SessionId(2),
            track: TrackId("1".into()),
            max_layer: Some(1),
            max_temporal: None,
            paused: false,
        }),
        Request::EngineStats,
        Request::ShardList,
        Request::ShardDrain(ShardRef { shard: ShardId(3) }),
        Request::EventsSubscribe(EventsSubscribe { kinds: None }),
        Request::EventsSubscribe(EventsSubscribe {
            kinds: Some(vec![EventKind::SessionState, EventKind::ChannelMessage]),
        }),
        Request::EventsUnsubscribe,
        Request::ChannelSend(ChannelSend {
            session: SessionId(1),
            channel: ChannelRef::Label("chat".into()),
            payload: ChannelPayload::Text("hi".into()),
        }),
        Request::ChannelSend(ChannelSend {
            session: SessionId(1),
            channel: ChannelRef::Id(3),
            payload: ChannelPayload::Binary(vec![0, 1, 2, 255]),
        }),
        Request::RelayListen(RelayListen {
            keepalive_ms: Some(200),
            timeout_ms: None,
        }),
        Request::RelayConnect(RelayConnect {
            invite: RelayInvite {
                relay: SessionId(7),
                ice_ufrag: "abcd".into(),
                ice_pwd: "0123456789abcdefghijkl".into(),
                fingerprint: "sha-256 AB:CD".into(),
                addr: "127.0.0.3:40000".into(),
                keepalive_ssrc: 11,
            },
            keepalive_ms: None,
            timeout_ms: Some(3000),
        }),
        Request::RelayAccept(RelayAccept {
            relay: SessionId(7),
            answer: RelayAnswer {
                relay: SessionId(3),
                ice_ufrag: "efgh".into(),
                ice_pwd: "0123456789abcdefghijkl".into(),
                fingerprint: "sha-256 EF:01".into(),
                keepalive_ssrc: 12,
            },
        }),
        Request::RelayPublish(RelayPublish {
            relay: SessionId(3),
            session: SessionId(1),
            track: TrackId("1".into()),
        }),
        Request::RelayUnpublish(RelayTrackRef {
            relay: SessionId(3),
            relay_track: TrackId("r1".into()),
        }),
        Request::RelayAttach(RelayAttach {
            relay: SessionId(7),
            track: RelayTrack {
                relay_track: TrackId("r1".into()),
                kind: "video".into(),
                ssrc: 5,
                rtx_ssrc: 6,
                rtx: vec![(96, 127)],
                payloads: vec![RelayPayload {
                    pt: 96,
                    codec: "VP8".into(),
                    clock_rate: 90000,
                }],
                layers: (0..3u8)
                    .map(|l| RelayLayer {
                        layer: l,
                        ssrc: 5 + 2 * u32::from(l),
                        rtx_ssrc: 6 + 2 * u32::from(l),
                    })
                    .collect(),
            },
        }),
        Request::RelayClose(RelayRef {
            relay: SessionId(3),
        }),
        Request::SessionRenegotiate(SessionRenegotiate {
            session: SessionId(1),
            offer: "v=0\r\n".into(),
        }),
        Request::SessionIce(SessionIce {
            session: SessionId(1),
            fragment: "a=ice-ufrag:abcd\r\na=end-of-candidates\r\n".into(),
        }),
        Request::SessionOffer(SessionOffer {
            session: SessionId(1),
            add: vec![OfferMedia {
                kind: MediaKind::Video,
                direction: MediaDirection::Sendonly,
            }],
            remove: vec![TrackId("0".into())],
            ice_restart: true,
        }),
        Request::SessionAnswer(SessionAnswer {
            session: SessionId(1),
            answer: "v=0\r\n".into(),
        }),
        Request::PlainEgress(PlainEgress {
            room: RoomId("lobby".into()),
            tracks: Some(vec![PlainTrackRef {
                session: SessionId(1),
                track: TrackId("1".into()),
            }]),
            addr: "127.0.0.1".into(),
            port: 40000,
            srtp: Some(PlainSrtp {
                suite: "AES_CM_128_HMAC_SHA1_80".into(),
                key: "QUJD".into(),
                reverse_key: None,
            }),
        }),
        Request::PlainIngest(PlainIngest {
            source: "127.0.0.1:5004".into(),
            tracks: vec![PlainIngestTrack {
                kind: MediaKind::Video,
                ssrc: 1234,
                payloads: vec![RelayPayload {
                    pt: 96,
                    codec: "VP8".into(),
                    clock_rate: 90000,
                }],
            }],
            room: Some(RoomId("lobby".into())),
            srtp: None,
            timeout_ms: Some(5000),
            shard: None,
        }),
    ]
}

#[test]
fn every_op_round_trips() {
    let reqs = all_requests();
    let mut seen = std::collections::HashSet::new();
    for (i, req) in reqs.into_iter().enumerate() {
        seen.insert(req.kind());
        let id = if i % 2 == 0 {
            RequestId::Num(i as u64)
        } else {
            RequestId::Str(format!("req-{i}"))
        };
        let line = req.to_line(&id);
        assert_eq!(line.last(), Some(&b'\n'));
        let body = line.strip_suffix(b"\n").expect("newline");
        assert!(!body.contains(&b'\n'), "one line");
        let env = parse_request_line(body).expect("parses");
        assert_eq!(env.id, id);
        assert_eq!(env.request, req);
    }
    for k in OpKind::ALL {
        assert!(seen.contains(&k), "{k} not covered");
        assert_eq!(OpKind::from_name(k.name()), Some(k));
    }
}

fn parse_json(v: Value) -> Result<RequestEnvelope, RequestLineError> {
    parse_request_line(v.to_string().as_bytes())
}

#[test]
fn documented_wire_forms_parse() {
    let cases = [
        (
            json!({"id":1,"op":"session.create","params":{"offer":"v=0\r\n","room":"lobby","shard":0,"reap_on_disconnect":true}}),
            OpKind::SessionCreate,
        ),
        (
            json!({"id":"x","op":"session.create","params":{"direct":{"ice_ufrag":"u","ice_pwd":"p","fingerprint":{"algorithm":"sha-256","value":"AA"},"remote_dtls_role":"server","candidates":[]}}}),
            OpKind::SessionCreate,
        ),
        (
            json!({"id":2,"op":"session.close","params":{"session":5}}),
            OpKind::SessionClose,
        ),
        (
            json!({"id":3,"op":"session.stats","params":{"session":5}}),
            OpKind::SessionStats,
        ),
        (
            json!({"id":4,"op":"room.create","params":{"room":"r"}}),
            OpKind::RoomCreate,
        ),
        (
            json!({"id":5,"op":"room.close","params":{"room":"r"}}),
            OpKind::RoomClose,
        ),
        (json!({"id":6,"op":"room.list"}), OpKind::RoomList),
        (
            json!({"id":6,"op":"room.list","params":{}}),
            OpKind::RoomList,
        ),
        (
            json!({"id":6,"op":"room.list","params":null}),
            OpKind::RoomList,
        ),
        (
            json!({"id":7,"op":"publish","params":{"session":1,"room":"r"}}),
            OpKind::Publish,
        ),
        (
            json!({"id":8,"op":"subscribe","params":{"subscriber":2,"publisher":1,"tracks":["0"]}}),
            OpKind::Subscribe,
        ),
        (
            json!({"id":9,"op":"unsubscribe","params":{"subscriber":2,"publisher":1}}),
            OpKind::Unsubscribe,
        ),
        (
            json!({"id":10,"op":"keyframe.request","params":{"session":1}}),
            OpKind::KeyframeRequest,
        ),
        (json!({"id":11,"op":"engine.stats"}), OpKind::EngineStats),
        (json!({"id":12,"op":"shard.list"}), OpKind::ShardList),
        (
            json!({"id":13,"op":"shard.drain","params":{"shard":1}}),
            OpKind::ShardDrain,
        ),
        (
            json!({"id":14,"op":"events.subscribe","params":{"kinds":["session.state"]}}),
            OpKind::EventsSubscribe,
        ),
        (
            json!({"id":14,"op":"events.subscribe"}),
            OpKind::EventsSubscribe,
        ),
        (
            json!({"id":15,"op":"events.unsubscribe"}),
            OpKind::EventsUnsubscribe,
        ),
        (
            json!({"id":16,"op":"channel.send","params":{"session":1,"channel":"chat","data":"hello"}}),
            OpKind::ChannelSend,
        ),
        (
            json!({"id":17,"op":"channel.send","params":{"session":1,"channel":0,"data_b64":"AAEC"}}),
            OpKind::ChannelSend,
        ),
        (
            json!({"id":20,"op":"session.renegotiate","params":{"session":42,"offer":"v=0\r\n"}}),
            OpKind::SessionRenegotiate,
        ),
        (
            json!({"id":21,"op":"session.ice","params":{"session":42,"fragment":"a=end-of-candidates\r\n"}}),
            OpKind::SessionIce,
        ),
        (
            json!({"id":23,"op":"session.offer","params":{"session":42,"add":[{"kind":"video","direction":"sendonly"}],"remove":["1"],"ice_restart":false}}),
            OpKind::SessionOffer,
        ),
        (
            json!({"id":24,"op":"session.answer","params":{"session":42,"answer":"v=0\r\n"}}),
            OpKind::SessionAnswer,
        ),
    ];
    for (v, kind) in cases {
        let env = parse_json(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(env.request.kind(), kind, "{v}");
    }
    let env = parse_json(
        json!({"id":17,"op":"channel.send","params":{"session":1,"channel":0,"data_b64":"AAEC"}}),
    )
    .expect("parses");
    match env.request {
        Request::ChannelSend(c) => {
            assert_eq!(c.channel, ChannelRef::Id(0));
            assert_eq!(c.payload, ChannelPayload::Binary(vec![0, 1, 2]));
        }
        other => panic!("{other:?}"),
    }
}

fn code_of(r: Result<RequestEnvelope, RequestLineError>) -> (Option<RequestId>, ErrorCode) {
    let e = r.expect_err("must fail");
    (e.id, e.error.code)
}

#[test]
fn bad_lines_give_typed_errors() {
    assert_eq!(
        code_of(parse_request_line(b"garbage")),
        (None, ErrorCode::BadJson)
    );
    assert_eq!(code_of(parse_request_line(b"")), (None, ErrorCode::BadJson));
    assert_eq!(
        code_of(parse_request_line(b"\xff\xfe")),
        (None, ErrorCode::BadJson)
    );
    assert_eq!(
        code_of(parse_request_line(b"{\"id\":1,")),
        (None, ErrorCode::BadJson)
    );
    assert_eq!(
        code_of(parse_request_line(b"[1,2]")),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"op":"room.list"}))),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":-1,"op":"room.list"}))),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":1.5,"op":"room.list"}))),
        (None, ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":1}))),
        (Some(RequestId::Num(1)), ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":1,"op":5}))),
        (Some(RequestId::Num(1)), ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":1,"op":"room.list","extra":1}))),
        (Some(RequestId::Num(1)), ErrorCode::BadRequest)
    );
    assert_eq!(
        code_of(parse_json(json!({"id":"a","op":"room.explode"}))),
        (Some(RequestId::Str("a".into())), ErrorCode::UnknownOp)
    );
    let bad_params = [
        json!({"id":1,"op":"session.close","params":{"session":"seven"}}),
        json!({"id":1,"op":"session.close","params":{}}),
        json!({"id":1,"op":"session.close","params":[1]}),
        json!({"id":1,"op":"session.close","params":{"session":1,"typo":2}}),
        json!({"id":1,"op":"room.list","params":{"x":1}}),
        json!({"id":1,"op":"session.create","params":{}}),
        json!({"id":1,"op":"session.create","params":{"offer":"v=0","direct":{"ice_ufrag":"u","ice_pwd":"p","fingerprint":{"algorithm":"sha-256","value":"AA"},"remote_dtls_role":"server"}}}),
        json!({"id":1,"op":"session.create","params":{"offer":"v=0","shard":-1}}),
        json!({"id":1,"op":"session.create","params":{"offer":"v=0","reap_on_disconnect":"yes"}}),
        json!({"id":1,"op":"channel.send","params":{"session":1,"channel":0}}),
        json!({"id":1,"op":"channel.send","params":{"session":1,"channel":0,"data":"a","data_b64":"AA=="}}),
        json!({"id":1,"op":"channel.send","params":{"session":1,"channel":0,"data_b64":"!!!"}}),
        json!({"id":1,"op":"channel.send","params":{"session":1,"channel":70000,"data":"a"}}),
        json!({"id":1,"op":"events.subscribe","params":{"kinds":["nope"]}}),
        json!({"id":1,"op":"shard.drain","params":{"shard":4294967296u64}}),
    ];
    for v in bad_params {
        assert_eq!(
            code_of(parse_json(v.clone())),
            (Some(RequestId::Num(1)), ErrorCode::BadParams),
            "{v}"
        );
    }
    // A trailing CR (telnet-style line ending) is tolerated.
    assert!(parse_request_line(b"{\"id\":1,\"op\":\"room.list\"}\r").is_ok());
}

fn hist(n: u64) -> HistogramSummary {
    HistogramSummary {
        count: n,
        p50: 1,
        p90: 2,
        p99: 3,
        p999: 4,
        max: 5,
    }
}

fn shard_stats(i: u32) -> ShardStats {
    let mut drops = BTreeMap::new();
    drops.insert("unknown_peer".to_string(), 3);
    drops.insert("srtp_auth".to_string(), 4);
    let mut histograms = BTreeMap::new();
    histograms.insert("forward_us".to_string(), hist(9));
    ShardStats {
        head: ShardHead {
            shard: ShardId(i),
            core: Some(i),
            backend: "io_uring".into(),
            sessions: 10,
            draining: false,
        },
        healthy: true,
        packets_in: 1000,
        packets_out: 2000,
        bytes_in: 1_000_000,
        bytes_out: 2_000_000,
        drops,
        gso_batches: 50,
        gro_batches: 60,
        loop_us: hist(100),
        histograms,
        forward_ns: control::LatencyBuckets::default(),
        detail: control::ShardDetail::default(),
        maps: [("sessions".to_owned(), 3), ("by_addr".to_owned(), 3)]
            .into_iter()
            .collect(),
    }
}

fn all_responses() -> Vec<(OpKind, Response)> {
    vec![
        (
            OpKind::SessionCreate,
            Response::SessionCreated(SessionCreated {
                session: SessionId(1),
                shard: ShardId(0),
                answer: Some("v=0\r\n".into()),
                ice_ufrag: "u".into(),
                ice_pwd: "p".into(),
                fingerprint: Fingerprint {
                    algorithm: "sha-256".into(),
                    value: "AA".into(),
                },
                dtls_role: DtlsRole::Server,
                candidates: vec!["candidate:1 1 udp 1 192.0.2.1 1 typ host".into()],
            }),
        ),
        (
            OpKind::SessionStats,
            Response::SessionStats(SessionStats {
                session: SessionId(1),
                shard: ShardId(0),
                state: SessionState::Connected,
                room: Some(RoomId("r".into())),
                age_ms: 1234,
                selected_pair: Some("192.0.2.1:1 -> 192.0.2.2:2".into()),
                rtt_ms: Some(12.5),
                packets_in: 1,
                packets_out: 2,
                bytes_in: 3,
                bytes_out: 4,
                tracks: vec![TrackStats {
                    track: TrackId("0".into()),
                    kind: MediaKind::Video,
                    inbound: true,
                    packets: 5,
                    bytes: 6,
                    lost: 7,
                    nacks: 8,
                    keyframe_requests: 9,
                    layer: Some(1),
                    target_layer: Some(2),
                    layers: vec![
                        LayerRate {
                            layer: 0,
                            bps: 150_000,
                        },
                        LayerRate {
                            layer: 2,
                            bps: 1_500_000,
                        },
                    ],
                }],
                dtls_version: Some("1.3".into()),
                estimate_bps: Some(1_500_000),
                probes: 3,
            }),
        ),
        (
            OpKind::RoomList,
            Response::Rooms(RoomList {
                rooms: vec![RoomInfo {
                    room: RoomId("r".into()),
                    sessions: vec![SessionId(1), SessionId(2)],
                    publishers: vec![SessionId(1)],
                }],
            }),
        ),
        (
            OpKind::Publish,
            Response::Tracks(TrackList {
                tracks: vec![TrackInfo {
                    track: TrackId("0".into()),
                    kind: MediaKind::Audio,
                    session: SessionId(1),
                    local_track: None,
                }],
            }),
        ),
        (
            OpKind::Subscribe,
            Response::Tracks(TrackList { tracks: vec![] }),
        ),
        (
            OpKind::EngineStats,
            Response::EngineStats(EngineStats {
                uptime_ms: 5,
                sessions: 20,
                rooms: 2,
                control_clients: 1,
                shards: vec![shard_stats(0), shard_stats(1)],
            }),
        ),
        (
            OpKind::ShardList,
            Response::Shards(ShardList {
                shards: vec![ShardInfo {
                    head: ShardHead {
                        shard: ShardId(0),
                        core: None,
                        backend: "portable".into(),
                        sessions: 0,
                        draining: true,
                    },
                    addrs: vec!["0.0.0.0:3478".into()],
                }],
            }),
        ),
        (
            OpKind::ShardDrain,
            Response::Draining(DrainStatus {
                shard: ShardId(0),
                sessions: 3,
            }),
        ),
        (
            OpKind::EventsSubscribe,
            Response::EventsSubscribed(EventsSubscribed {
                kinds: EventKind::ALL.to_vec(),
            }),
        ),
        (OpKind::SessionClose, Response::Done),
        (OpKind::RoomCreate, Response::Done),
        (OpKind::RoomClose, Response::Done),
        (OpKind::Unsubscribe, Response::Done),
        (OpKind::KeyframeRequest, Response::Done),
        (OpKind::TrackSetPreference, Response::Done),
        (OpKind::EventsUnsubscribe, Response::Done),
        (OpKind::ChannelSend, Response::Done),
        (
            OpKind::RelayListen,
            Response::RelayInvite(RelayInvite {
                relay: SessionId(7),
                ice_ufrag: "abcd".into(),
                ice_pwd: "0123456789abcdefghijkl".into(),
                fingerprint: "sha-256 AB:CD".into(),
                addr: "127.0.0.3:40000".into(),
                keepalive_ssrc: 11,
            }),
        ),
        (
            OpKind::RelayConnect,
            Response::RelayAnswer(RelayAnswer {
                relay: SessionId(3),
                ice_ufrag: "efgh".into(),
                ice_pwd: "0123456789abcdefghijkl".into(),
                fingerprint: "sha-256 EF:01".into(),
                keepalive_ssrc: 12,
            }),
        ),
        (OpKind::RelayAccept, Response::Done),
        (
            OpKind::RelayPublish,
            Response::RelayTrack(RelayTrack {
                relay_track: TrackId("r1".into()),
                kind: "video".into(),
                ssrc: 5,
                rtx_ssrc: 6,
                rtx: vec![(96, 127)],
                payloads: vec![RelayPayload {
                    pt: 96,
                    codec: "VP8".into(),
                    clock_rate: 90000,
                }],
                // A single-stream track: no layers (the field is left out).
                layers: Vec::new(),
            }),
        ),
        (OpKind::RelayUnpublish, Response::Done),
        (OpKind::RelayAttach, Response::Done),
        (OpKind::RelayClose, Response::Done),
        (
            OpKind::SessionRenegotiate,
            Response::Renegotiated(Renegotiated {
                answer: Some("v=0\r\n".into()),
                fragment: None,
                added: vec!["2".into()],
                removed: vec!["1".into()],
                ice_restarted: false,
                offer: None,
            }),
        ),
        (
            OpKind::SessionIce,
            Response::Renegotiated(Renegotiated {
                answer: None,
                fragment: Some("a=ice-ufrag:abcd\r\n".into()),
                added: vec![],
                removed: vec![],
                ice_restarted: true,
                offer: None,
            }),
        ),
        (
            OpKind::SessionOffer,
            Response::Renegotiated(Renegotiated {
                offer: Some("v=0\r\n".into()),
                ..Renegotiated::default()
            }),
        ),
        (
            OpKind::SessionAnswer,
            Response::Renegotiated(Renegotiated::default()),
        ),
        (
            OpKind::PlainEgress,
            Response::PlainEgressed(PlainEgressed {
                tracks: vec![PlainEgressTrack {
                    session: SessionId(9),
                    source: PlainTrackRef {
                        session: SessionId(1),
                        track: TrackId("1".into()),
                    },
                    kind: MediaKind::Audio,
                    port: 40000,
                    ssrc: 77,
                    payloads: vec![RelayPayload {
                        pt: 111,
                        codec: "opus".into(),
                        clock_rate: 48000,
                    }],
                }],
                sdp: "v=0\r\n".into(),
            }),
        ),
        (
            OpKind::PlainIngest,
            Response::PlainIngested(PlainIngested {
                session: SessionId(10),
                shard: ShardId(0),
                addr: "127.0.0.1:40000".into(),
                tracks: vec![TrackId("p0".into())],
                sdp: "v=0\r\n".into(),
            }),
        ),
    ]
}

#[test]
fn every_response_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for (i, (kind, resp)) in all_responses().into_iter().enumerate() {
        seen.insert(kind);
        assert!(resp.fits(kind), "{kind}");
        let id = RequestId::Num(i as u64);
        let line = response_line(&id, &resp);
        let body = line.strip_suffix(b"\n").expect("newline");
        match parse_server_line(body).expect("parses") {
            ServerLine::Response {
                id: Some(got),
                result: Ok(v),
            } => {
                assert_eq!(got, id);
                assert_eq!(Response::from_value(kind, v).expect("typed"), resp);
            }
            other => panic!("{other:?}"),
        }
    }
    for k in OpKind::ALL {
        assert!(seen.contains(&k), "{k} response not covered");
    }
    assert!(!Response::Done.fits(OpKind::EngineStats));
    assert!(!Response::Rooms(RoomList { rooms: vec![] }).fits(OpKind::ShardList));
    assert_eq!(
        response_line(&RequestId::Num(1), &Response::Done),
        b"{\"id\":1,\"ok\":{}}\n"
    );
}

#[test]
fn error_and_hello_lines() {
    let e = ControlError::not_found("no session 9");
    let line = error_line(Some(&RequestId::Str("a".into())), &e);
    assert_eq!(
        std::str::from_utf8(&line).expect("utf8"),
        "{\"id\":\"a\",\"error\":{\"code\":\"not_found\",\"message\":\"no session 9\"}}\n"
    );
    let line = error_line(None, &e);
    match parse_server_line(line.strip_suffix(b"\n").expect("nl")).expect("parses") {
        ServerLine::Response {
            id: None,
            result: Err(got),
        } => assert_eq!(got, e),
        other => panic!("{other:?}"),
    }
    let h = hello_line("srv/1");
    assert_eq!(h, b"{\"hello\":{\"protocol\":1,\"server\":\"srv/1\"}}\n");
    // Unknown codes from a newer server are readable.
    let e: ControlError =
        serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#).expect("parses");
    assert_eq!(e.code, ErrorCode::Other);
    for c in [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::BadParams,
        ErrorCode::LineTooLong,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::ShuttingDown,
        ErrorCode::SlowConsumer,
        ErrorCode::ShardFull,
        ErrorCode::EngineFull,
        ErrorCode::TooManyMedia,
        ErrorCode::TooManyRooms,
        ErrorCode::TooManyLegs,
    ] {
        let s = serde_json::to_string(&c).expect("serialises");
        assert_eq!(s, format!("\"{}\"", c.as_str()));
        assert_eq!(serde_json::from_str::<ErrorCode>(&s).expect("parses"), c);
    }
}

fn all_events() -> Vec<Event> {
    let tc = TrackChange {
        session: SessionId(1),
        track: TrackId("0".into()),
        kind: MediaKind::Video,
        room: Some(RoomId("r".into())),
    };
    let fail = SessionFailure {
        session: SessionId(1),
        shard: ShardId(0),
        reason: "ice failed".into(),
    };
    vec![
        Event::SessionState(SessionStateChange {
            session: SessionId(1),
            state: SessionState::Connected,
            previous: SessionState::Connecting,
        }),
        Event::TrackAdded(tc.clone()),
        Event::TrackRemoved(tc),
        Event::KeyframeRequested(KeyframeRequested {
            session: SessionId(1),
            track: TrackId("1".into()),
            requester: Some(SessionId(2)),
        }),
        Event::SessionFailed(fail.clone()),
        Event::SessionPanicked(fail),
        Event::ChannelMessage(ChannelMessage {
            session: SessionId(1),
            channel: 1,
            label: "chat".into(),
            payload: ChannelPayload::Text("hey".into()),
        }),
        Event::ChannelMessage(ChannelMessage {
            session: SessionId(1),
            channel: 2,
            label: "bin".into(),
            payload: ChannelPayload::Binary(vec![9, 8, 7]),
        }),
        Event::ShardDown(ShardFailure {
            shard: ShardId(1),
            sessions: 3,
            reason: "panicked".into(),
        }),
        Event::TrackLayersUnused(TrackLayersUnused {
            publisher: SessionId(1),
            track: TrackId("1".into()),
            layers: vec![2],
        }),
        Event::RoomActiveSpeakers(RoomActiveSpeakers {
            room: RoomId("lobby".into()),
            sessions: vec![SessionId(3), SessionId(1)],
        }),
        Event::RelayDown(RelayDown {
            relay: SessionId(3),
            reason: "silent".into(),
        }),
    ]
}

#[test]
fn every_event_round_trips() {
    let mut seen = std::collections::HashSet::new();
    for ev in all_events() {
        seen.insert(ev.kind());
        let line = ev.to_line();
        let v: Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["event"], ev.kind().name());
        assert!(v["data"].is_object());
        match parse_server_line(line.strip_suffix(b"\n").expect("nl")).expect("parses") {
            ServerLine::Event(got) => assert_eq!(got, ev),
            other => panic!("{other:?}"),
        }
    }
    for k in EventKind::ALL {
        assert!(seen.contains(&k));
        assert_eq!(EventKind::from_name(k.name()), Some(k));
    }
    let v: Value = serde_json::from_slice(&all_events()[7].to_line()).expect("json");
    assert_eq!(v["data"]["data_b64"], "CQgH");
}

#[test]
fn histogram_summary_helper() {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for v in [10u64, 20, 30, 40, 1000] {
        h.record(v).expect("in range");
    }
    let s = summarize(&h);
    assert_eq!(s.count, 5);
    assert_eq!(s.p50, 30);
    assert_eq!(s.max, 1000);
}

fn arb_id() -> impl Strategy<Value = RequestId> {
    prop_oneof![
        any::<u64>().prop_map(RequestId::Num),
        ".{0,12}".prop_map(RequestId::Str),
    ]
}

fn arb_tracks() -> impl Strategy<Value = Option<Vec<TrackId>>> {
    proptest::option::of(proptest::collection::vec(".{0,6}".prop_map(TrackId), 0..4))
}

fn arb_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            ".{0,200}",
            proptest::option::of(".{0,8}"),
            proptest::option::of(any::<u32>()),
            any::<bool>()
        )
            .prop_map(
                |(sdp, room, shard, reap)| Request::SessionCreate(SessionCreate {
                    setup: SessionSetup::Offer(sdp),
                    room: room.map(RoomId),
                    shard: shard.map(ShardId),
                    reap_on_disconnect: reap,
                })
            ),
        (
            ".{0,8}",
            ".{0,30}",
            proptest::collection::vec(".{0,40}", 0..3),
            any::<bool>()
        )
            .prop_map(|(u, p, c, lite)| Request::SessionCreate(SessionCreate {
                setup: SessionSetup::Direct(DirectParams {
                    ice_ufrag: u,
                    ice_pwd: p,
                    fingerprint: Fingerprint {
                        algorithm: "sha-256".into(),
                        value: "00".into()
                    },
                    remote_dtls_role: if lite {
                        DtlsRole::Server
                    } else {
                        DtlsRole::Client
                    },
                    candidates: c,
                    ice_lite: lite,
                }),
                room: None,
                shard: None,
                reap_on_disconnect: false,
            })),
        any::<u64>().prop_map(|s| Request::SessionClose(SessionRef {
            session: SessionId(s)
        })),
        ".{0,16}".prop_map(|r| Request::RoomCreate(RoomRef { room: RoomId(r) })),
        (any::<u64>(), ".{0,8}", arb_tracks()).prop_map(|(s, r, t)| Request::Publish(Publish {
            session: SessionId(s),
            room: RoomId(r),
            tracks: t
        })),
        (any::<u64>(), any::<u64>(), arb_tracks()).prop_map(|(a, b, t)| Request::Subscribe(
            Subscribe {
                subscriber: SessionId(a),
                publisher: SessionId(b),
                tracks: t
            }
        )),
        (any::<u64>(), proptest::option::of(".{0,4}")).prop_map(|(s, t)| Request::KeyframeRequest(
            KeyframeRequest {
                session: SessionId(s),
                track: t.map(TrackId)
            }
        )),
        (any::<u64>(), any::<u16>(), ".{0,64}").prop_map(|(s, c, d)| Request::ChannelSend(
            ChannelSend {
                session: SessionId(s),
                channel: ChannelRef::Id(c),
                payload: ChannelPayload::Text(d)
            }
        )),
        (
            any::<u64>(),
            ".{0,8}",
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(s, l, d)| Request::ChannelSend(ChannelSend {
                session: SessionId(s),
                channel: ChannelRef::Label(l),
                payload: ChannelPayload::Binary(d)
            })),
        Just(Request::RoomList),
        Just(Request::EngineStats),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn request_lines_round_trip(id in arb_id(), req in arb_request()) {
        let line = req.to_line(&id);
        let body = line.strip_suffix(b"\n").expect("newline");
        prop_assert!(!body.contains(&b'\n'));
        let env = parse_request_line(body).expect("parses");
        prop_assert_eq!(env.id, id);
        prop_assert_eq!(env.request, req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_request_line(&data);
        let _ = parse_server_line(&data);
    }

    #[test]
    fn channel_messages_round_trip(data in proptest::collection::vec(any::<u8>(), 0..128), ch in any::<u16>()) {
        let ev = Event::ChannelMessage(ChannelMessage {
            session: SessionId(1), channel: ch, label: "l".into(), payload: ChannelPayload::Binary(data),
        });
        let line = ev.to_line();
        match parse_server_line(line.strip_suffix(b"\n").expect("nl")).expect("parses") {
            ServerLine::Event(got) => prop_assert_eq!(got, ev),
            other => prop_assert!(false, "{:?}", other),
        }
    }
}

#[test]
fn track_info_local_track_is_optional_on_the_wire() {
    // Older servers send no `local_track`; it parses as `None` and is not written back.
    let old: TrackInfo =
        serde_json::from_value(json!({"track":"1","kind":"video","session":42})).unwrap();
    assert_eq!(old.local_track, None);
    assert_eq!(
        serde_json::to_value(&old).unwrap(),
        json!({"track":"1","kind":"video","session":42})
    );
    let sub: TrackInfo =
        serde_json::from_value(json!({"track":"1","kind":"video","session":42,"local_track":"3"}))
            .unwrap();
    assert_eq!(sub.local_track, Some(TrackId("3".into())));
}
