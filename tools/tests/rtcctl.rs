//! Run the built `rtcctl` against a test control server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use control::*;
use serde_json::{Value, json};

/// Records requests; engine counters grow by a fixed step on every `engine.stats`.
#[derive(Default)]
struct Handler {
    calls: Mutex<Vec<Request>>,
    stats_calls: AtomicU64,
}

impl ControlHandler for Handler {
    fn handle(&self, _client: ClientId, req: Request) -> Result<Response, ControlError> {
        self.calls.lock().expect("lock").push(req.clone());
        Ok(match req {
            Request::SessionCreate(c) => Response::SessionCreated(SessionCreated {
                session: SessionId(5),
                shard: c.shard.unwrap_or(ShardId(1)),
                answer: match c.setup {
                    SessionSetup::Offer(o) => Some(format!("answer-to:{}", o.len())),
                    SessionSetup::Direct(_) => None,
                },
                ice_ufrag: "uf".into(),
                ice_pwd: "pw".into(),
                fingerprint: Fingerprint {
                    algorithm: "sha-256".into(),
                    value: "AA".into(),
                },
                dtls_role: DtlsRole::Server,
                candidates: vec!["candidate:1 1 udp 1 192.0.2.1 4000 typ host".into()],
            }),
            Request::SessionClose(SessionRef { session }) if session.0 != 5 => {
                return Err(ControlError::not_found(format!("no session {session}")));
            }
            Request::RoomList => Response::Rooms(RoomList {
                rooms: vec![RoomInfo {
                    room: RoomId("lobby".into()),
                    sessions: vec![SessionId(5)],
                    publishers: vec![SessionId(5)],
                }],
            }),
            Request::EngineStats => {
                let n = self.stats_calls.fetch_add(1, Ordering::SeqCst);
                let shard = |i: u32| {
                    let mut drops = BTreeMap::new();
                    drops.insert("unknown_peer".to_string(), n * 2);
                    ShardStats {
                        head: ShardHead {
                            shard: ShardId(i),
                            core: Some(i),
                            backend: "io_uring".into(),
                            sessions: 2,
                            draining: false,
                        },
                        healthy: true,
                        packets_in: n * 1000,
                        packets_out: n * 2000,
                        bytes_in: n * 1_000_000,
                        bytes_out: n * 2_000_000,
                        drops,
                        gso_batches: n,
                        gro_batches: n,
                        loop_us: HistogramSummary {
                            count: 10,
                            p50: 5,
                            p90: 9,
                            p99: 17,
                            p999: 30,
                            max: 31,
                        },
                        histograms: BTreeMap::new(),
                        forward_ns: control::LatencyBuckets::default(),
                        detail: control::ShardDetail::default(),
                        maps: BTreeMap::new(),
                    }
                };
                Response::EngineStats(EngineStats {
                    uptime_ms: 61_000,
                    sessions: 4,
                    rooms: 1,
                    control_clients: 1,
                    shards: vec![shard(0), shard(1)],
                })
            }
            Request::ShardList => Response::Shards(ShardList {
                shards: vec![ShardInfo {
                    head: ShardHead {
                        shard: ShardId(0),
                        core: Some(0),
                        backend: "io_uring".into(),
                        sessions: 2,
                        draining: false,
                    },
                    addrs: vec!["192.0.2.1:4000".into()],
                }],
            }),
            Request::ShardDrain(ShardRef { shard }) => {
                Response::Draining(DrainStatus { shard, sessions: 2 })
            }
            Request::SessionStats(SessionRef { session }) => Response::SessionStats(SessionStats {
                session,
                shard: ShardId(1),
                state: SessionState::Connected,
                room: None,
                age_ms: 1500,
                selected_pair: None,
                rtt_ms: Some(20.0),
                packets_in: 10,
                packets_out: 20,
                bytes_in: 1000,
                bytes_out: 2000,
                tracks: vec![],
                dtls_version: None,
                estimate_bps: None,
                probes: 0,
            }),
            Request::Publish(p) => Response::Tracks(TrackList {
                tracks: vec![TrackInfo {
                    track: TrackId("0".into()),
                    kind: MediaKind::Video,
                    session: p.session,
                    local_track: None,
                }],
            }),
            Request::Subscribe(_) => Response::Tracks(TrackList { tracks: vec![] }),
            Request::PlainEgress(e) => Response::PlainEgressed(PlainEgressed {
                tracks: vec![PlainEgressTrack {
                    session: SessionId(9),
                    source: PlainTrackRef {
                        session: SessionId(5),
                        track: TrackId("1".into()),
                    },
                    kind: MediaKind::Video,
                    port: e.port,
                    ssrc: 77,
                    payloads: vec![],
                }],
                sdp: "v=0\r\n".into(),
            }),
            Request::PlainIngest(p) => Response::PlainIngested(PlainIngested {
                session: SessionId(8),
                shard: p.shard.unwrap_or(ShardId(0)),
                addr: "192.0.2.1:4000".into(),
                tracks: vec![TrackId("p0".into())],
                sdp: "v=0\r\nm=video 4000 RTP/AVP 96\r\n".into(),
            }),
            Request::SessionRenegotiate(r) => Response::Renegotiated(control::Renegotiated {
                answer: Some(format!("answer-to:{}", r.offer.len())),
                added: vec!["2".into()],
                ..Default::default()
            }),
            Request::SessionOffer(o) => Response::Renegotiated(control::Renegotiated {
                offer: Some(format!("offer-adding:{}", o.add.len())),
                ..Default::default()
            }),
            Request::SessionIce(r) => {
                let restart = r.fragment.contains("a=ice-pwd");
                Response::Renegotiated(control::Renegotiated {
                    fragment: restart.then(|| "a=ice-ufrag:eng2\r\n".to_string()),
                    ice_restarted: restart,
                    ..Default::default()
                })
            }
            _ => Response::Done,
        })
    }

    fn client_gone(&self, _client: ClientId) {}
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn server() -> (ControlServer, Arc<Handler>, PathBuf) {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rtcctl-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let h = Arc::new(Handler::default());
    let s = ControlServer::bind(ServerConfig::new(dir.join("c.sock")), h.clone()).expect("bind");
    (s, h, dir)
}

fn rtcctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rtcctl"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rtcctl")
}

fn json_out(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "rtcctl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = String::from_utf8(o.stdout.clone()).expect("utf8");
    assert_eq!(s.lines().count(), 1, "one JSON line: {s}");
    serde_json::from_str(&s).expect("JSON output")
}

#[test]
fn json_output_for_each_command() {
    let (s, h, dir) = server();
    let sock = s.path().to_path_buf();
    let offer = dir.join("offer.sdp");
    std::fs::write(&offer, "v=0\r\n").expect("write offer");

    let v = json_out(&rtcctl(&sock, &["--json", "room", "list"]));
    assert_eq!(v["rooms"][0]["room"], "lobby");

    let v = json_out(&rtcctl(
        &sock,
        &[
            "--json",
            "session",
            "create",
            "--offer-file",
            offer.to_str().expect("utf8 path"),
            "--room",
            "lobby",
            "--shard",
            "3",
            "--reap-on-disconnect",
        ],
    ));
    assert_eq!(v["session"], 5);
    assert_eq!(v["shard"], 3);
    assert_eq!(v["answer"], "answer-to:5");

    let direct = dir.join("direct.json");
    std::fs::write(
        &direct,
        json!({"ice_ufrag":"u","ice_pwd":"p","fingerprint":{"algorithm":"sha-256","value":"AA"},"remote_dtls_role":"client"}).to_string(),
    )
    .expect("write");
    let v = json_out(&rtcctl(
        &sock,
        &[
            "--json",
            "session",
            "create",
            "--direct-file",
            direct.to_str().expect("utf8"),
        ],
    ));
    assert!(v.get("answer").is_none());

    let v = json_out(&rtcctl(&sock, &["--json", "engine", "stats"]));
    assert_eq!(v["shards"].as_array().expect("shards").len(), 2);
    assert_eq!(v["shards"][0]["loop_us"]["p99"], 17);

    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "shard", "list"]))["shards"][0]["backend"],
        "io_uring"
    );
    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "shard", "drain", "1"]))["shard"],
        1
    );
    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "room", "create", "r1"])),
        json!({})
    );
    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "room", "close", "r1"])),
        json!({})
    );
    assert_eq!(
        json_out(&rtcctl(
            &sock,
            &["--json", "publish", "5", "lobby", "--track", "0"]
        ))["tracks"][0]["kind"],
        "video"
    );
    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "subscribe", "6", "5"])),
        json!({"tracks": []})
    );
    assert_eq!(
        json_out(&rtcctl(&sock, &["--json", "unsubscribe", "6", "5"])),
        json!({})
    );
    assert_eq!(
        json_out(&rtcctl(
            &sock,
            &["--json", "keyframe", "request", "5", "--track", "0"]
        )),
        json!({})
    );
    let v = json_out(&rtcctl(&sock, &["--json", "session", "stats", "5"]));
    assert_eq!(
        (v["state"].clone(), v["bytes_out"].clone()),
        (json!("connected"), json!(2000))
    );
    assert_eq!(
        json_out(&rtcctl(
            &sock,
            &["--json", "channel", "send", "5", "chat", "--text", "hi"]
        )),
        json!({})
    );
    assert_eq!(
        json_out(&rtcctl(
            &sock,
            &["--json", "channel", "send", "5", "1", "--b64", "AAEC"]
        )),
        json!({})
    );

    // The handler got the typed requests.
    let calls = h.calls.lock().expect("lock").clone();
    assert!(calls.iter().any(|r| matches!(r,
        Request::SessionCreate(c) if c.reap_on_disconnect && c.room == Some(RoomId("lobby".into())))));
    assert!(calls.iter().any(|r| matches!(r,
        Request::ChannelSend(c) if c.channel == ChannelRef::Id(1) && c.payload == ChannelPayload::Binary(vec![0, 1, 2]))));
    assert!(calls.iter().any(|r| matches!(r,
        Request::ChannelSend(c) if c.channel == ChannelRef::Label("chat".into()))));
    assert!(calls.iter().any(|r| matches!(r,
        Request::KeyframeRequest(k) if k.track == Some(TrackId("0".into())))));
}

#[test]
fn plain_ingest_and_egress_commands() {
    let (s, h, dir) = server();
    let sock = s.path().to_path_buf();
    let sdp = dir.join("ingest.sdp");
    let sdp_arg = sdp.to_str().expect("utf8 path").to_string();
    let o = rtcctl(
        &sock,
        &[
            "plain",
            "ingest",
            "--source",
            "127.0.0.1:5004",
            "--track",
            "video:1234:96:VP8/90000",
            "--room",
            "lobby",
            "--srtp-suite",
            "AES_CM_128_HMAC_SHA1_80",
            "--srtp-key",
            "QUJD",
            "--sdp-file",
            &sdp_arg,
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("send to 192.0.2.1:4000"), "{out}");
    assert!(!out.contains("m=video"), "the SDP went to the file: {out}");
    assert!(
        std::fs::read_to_string(&sdp)
            .expect("sdp written")
            .contains("m=video 4000")
    );
    let o = rtcctl(
        &sock,
        &[
            "plain",
            "egress",
            "lobby",
            "--addr",
            "127.0.0.1",
            "--port",
            "40000",
            "--track",
            "5:1",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("session 9 sends 5:1 (video) to port 40000"),
        "{out}"
    );
    let bad = rtcctl(
        &sock,
        &["plain", "ingest", "--source", "x", "--track", "video:1"],
    );
    assert_eq!(bad.status.code(), Some(4), "{bad:?}");
    let calls = h.calls.lock().expect("lock");
    assert!(calls.iter().any(|c| matches!(c,
        Request::PlainIngest(p) if p.tracks[0].ssrc == 1234
            && p.tracks[0].payloads[0].codec == "VP8"
            && p.srtp.as_ref().is_some_and(|k| k.key == "QUJD")
            && p.room.as_ref().is_some_and(|r| r.0 == "lobby"))));
    assert!(calls.iter().any(|c| matches!(c,
        Request::PlainEgress(e) if e.port == 40000
            && e.tracks.as_ref().is_some_and(|t| t[0].session.0 == 5 && t[0].track.0 == "1"))));
    drop(calls);
    drop(s);
}

#[test]
fn renegotiate_and_ice_commands() {
    let (s, h, dir) = server();
    let sock = s.path().to_path_buf();
    let offer = dir.join("reoffer.sdp");
    std::fs::write(&offer, "v=0\r\nx").expect("write offer");
    let frag = dir.join("restart.frag");
    std::fs::write(
        &frag,
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n",
    )
    .expect("write fragment");
    let path = |p: &Path| p.to_str().expect("utf8 path").to_string();

    let v = json_out(&rtcctl(
        &sock,
        &[
            "--json",
            "session",
            "renegotiate",
            "7",
            "--offer-file",
            &path(&offer),
        ],
    ));
    assert_eq!(v["answer"], "answer-to:6");
    assert_eq!(v["added"], json!(["2"]));
    let out = dir.join("ours.frag");
    let o = rtcctl(
        &sock,
        &[
            "session",
            "ice",
            "7",
            "--fragment-file",
            &path(&frag),
            "--answer-file",
            &path(&out),
        ],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("fragment written"),
        "a=ice-ufrag:eng2\r\n"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ice-restart yes"),
        "{o:?}"
    );
    let calls = h.calls.lock().expect("lock");
    assert!(calls.iter().any(
        |c| matches!(c, Request::SessionIce(i) if i.session.0 == 7 && i.fragment.contains("abcd"))
    ));
    drop(calls);
    drop(s);
}

#[test]
fn server_errors_and_connection_failures_exit_nonzero() {
    let (s, _h, dir) = server();
    let o = rtcctl(s.path(), &["--json", "session", "close", "9"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json error");
    assert_eq!(v["error"]["code"], "not_found");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no session 9"));

    let o = rtcctl(&dir.join("nope.sock"), &["room", "list"]);
    assert_eq!(o.status.code(), Some(3));

    let o = rtcctl(
        s.path(),
        &["session", "create", "--offer-file", "/nonexistent/offer"],
    );
    assert_eq!(o.status.code(), Some(4));

    let o = rtcctl(s.path(), &["channel", "send", "1", "x", "--b64", "!!"]);
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn human_output() {
    let (s, _h, _dir) = server();
    let o = rtcctl(s.path(), &["room", "list"]);
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).expect("utf8");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ROOM"));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["lobby", "5", "5"]
    );
    let o = rtcctl(s.path(), &["room", "create", "x"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}

#[test]
fn top_once_prints_one_frame_with_rates() {
    let (s, h, _dir) = server();
    let o = rtcctl(s.path(), &["top", "--once", "--interval-ms", "100"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).expect("utf8");
    assert!(!out.contains('\x1b'), "--once prints no terminal codes");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("rtc-engine  up 1m01s"), "{out}");
    assert!(lines[2].contains("PPS_IN"));
    let row: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(&row[..4], ["0", "0", "io_uring", "2"]);
    assert_eq!(row[row.len() - 1], "17us");
    assert!(lines[5].starts_with("TOTAL"));
    assert_eq!(h.stats_calls.load(Ordering::SeqCst), 2);

    // JSON rows: counters grew by 1000 packets between samples ~100 ms apart.
    let o = rtcctl(
        s.path(),
        &["--json", "top", "--once", "--interval-ms", "100"],
    );
    let v = json_out(&o);
    let rows = v.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let pps = rows[0]["pps_in"].as_f64().expect("pps");
    assert!(pps > 0.0 && pps <= 1000.0 / 0.1, "pps {pps}");
    // Fourth engine.stats call of this server: n = 3, drops = 2n.
    assert_eq!(rows[0]["drops"], 6);
}

#[test]
fn events_stream_with_count() {
    let (s, _h, _dir) = server();
    let hub = s.events();
    let child = Command::new(env!("CARGO_BIN_EXE_rtcctl"))
        .arg("--socket")
        .arg(s.path())
        .args([
            "--json",
            "events",
            "--kind",
            "session.state",
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let ev = |n| {
        Event::SessionState(SessionStateChange {
            session: SessionId(n),
            state: SessionState::Connected,
            previous: SessionState::New,
        })
    };
    let other = Event::TrackAdded(TrackChange {
        session: SessionId(1),
        track: TrackId("0".into()),
        kind: MediaKind::Audio,
        room: None,
    });
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while hub.subscribers() == 0 {
        assert!(std::time::Instant::now() < end, "rtcctl never subscribed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(hub.publish(&other), 0, "filtered by kind");
    hub.publish(&ev(1));
    hub.publish(&ev(2));
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).expect("utf8");
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["event"], "session.state");
    assert_eq!(got[1]["data"]["session"], 2);
}
