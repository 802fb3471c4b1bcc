//! Data channels end to end through two `Rtc` (SDP, ICE, DTLS, SCTP, DCEP) over the
//! simulated network.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Ev, NetConfig, Pair, Peer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtc_core::channel::{ChannelConfig, Reliability};
use rtc_core::event::ChannelId;
use rtc_core::ice::Candidate;
use rtc_core::sdp_api::{SdpAnswer, SdpOffer};
use rtc_core::{Protocol, Rtc};

fn pair(net: NetConfig, seed: u64, channels: Vec<ChannelConfig>) -> Pair {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6000".parse().unwrap();
    let mut a = Rtc::new(now);
    let mut b = Rtc::new(now);
    a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).unwrap());
    b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).unwrap());
    let mut api = a.sdp_api();
    for c in channels {
        api.add_channel(c).unwrap();
    }
    let (offer, pending) = api.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let app = offer
        .description()
        .media
        .iter()
        .find(|m| m.is_sctp())
        .expect("app section");
    assert_eq!(app.max_message_size, Some(262_144));
    let answer = b.sdp_api().accept_offer(offer).unwrap();
    let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).unwrap();
    a.sdp_api().accept_answer(pending, answer).unwrap();
    Pair::new(
        Peer::new("a", a, a_addr, now),
        Peer::new("b", b, b_addr, now),
        now,
        net,
        seed,
    )
}

fn opened(p: &Peer) -> Vec<(ChannelId, String)> {
    p.events
        .iter()
        .filter_map(|e| match e {
            Ev::ChannelOpen(id, l) => Some((*id, l.clone())),
            _ => None,
        })
        .collect()
}

fn received(p: &Peer, id: ChannelId) -> Vec<Vec<u8>> {
    p.events
        .iter()
        .filter_map(|e| match e {
            Ev::ChannelData(i, _, d) if *i == id => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn msg(i: u32, size: usize) -> Vec<u8> {
    let mut m = vec![(i % 251) as u8; size.max(4)];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

#[test]
fn channels_open_and_carry_mixed_messages() {
    let ordered = ChannelConfig {
        label: "ordered".into(),
        ..Default::default()
    };
    let unordered = ChannelConfig {
        label: "unordered".into(),
        ordered: false,
        ..Default::default()
    };
    // 5% loss and up to 4 ms of jitter (packets overtake each other). "ordered"
    // relies on `ChannelConfig::default()` being ordered and reliable.
    let net = NetConfig {
        loss: 0.05,
        jitter: Duration::from_millis(4),
        ..Default::default()
    };
    let mut pair = pair(net, 11, vec![ordered, unordered]);
    let ok = pair.run_until(Duration::from_secs(20), |p| {
        opened(&p.a).len() == 2 && opened(&p.b).len() == 2
    });
    assert!(ok, "a={:?} b={:?}", pair.a.events, pair.b.events);
    let a_ch = opened(&pair.a);
    let b_ch = opened(&pair.b);
    let (a_ord, b_ord) = (a_ch[0].0, b_ch.iter().find(|c| c.1 == "ordered").unwrap().0);
    let (a_un, b_un) = (
        a_ch.iter().find(|c| c.1 == "unordered").unwrap().0,
        b_ch.iter().find(|c| c.1 == "unordered").unwrap().0,
    );
    assert_eq!(a_ord, b_ord);
    assert_eq!(a_un, b_un);

    // 1,000 messages each way per channel, mixed sizes, a few of 200 KiB.
    let mut rng = StdRng::seed_from_u64(5);
    let sizes: Vec<usize> = (0..1000)
        .map(|i| {
            if i % 250 == 7 {
                200 * 1024
            } else {
                rng.random_range(1..4000)
            }
        })
        .collect();
    for (i, &size) in sizes.iter().enumerate() {
        let m = msg(i as u32, size);
        pair.a.rtc.channel(a_ord).unwrap().write(true, &m).unwrap();
        pair.b.rtc.channel(b_ord).unwrap().write(true, &m).unwrap();
        pair.a.rtc.channel(a_un).unwrap().write(true, &m).unwrap();
        if i % 10 == 0 {
            pair.step();
        }
    }
    let done = pair.run_until(Duration::from_secs(120), |p| {
        received(&p.b, b_ord).len() == 1000
            && received(&p.a, a_ord).len() == 1000
            && received(&p.b, b_un).len() == 1000
    });
    assert!(
        done,
        "b got {} ordered, {} unordered; a got {}",
        received(&pair.b, b_ord).len(),
        received(&pair.b, b_un).len(),
        received(&pair.a, a_ord).len()
    );
    let expect: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| msg(i as u32, s))
        .collect();
    let ids = |v: Vec<Vec<u8>>| -> Vec<(u32, usize)> {
        v.iter()
            .map(|m| (u32::from_be_bytes([m[0], m[1], m[2], m[3]]), m.len()))
            .collect()
    };
    let got_ids = ids(received(&pair.b, b_ord));
    let exp_ids = ids(expect.clone());
    let first_diff = got_ids.iter().zip(&exp_ids).position(|(a, b)| a != b);
    assert_eq!(
        first_diff,
        None,
        "first difference at {first_diff:?}: got {:?} expected {:?}",
        first_diff.map(|i| &got_ids[i..(i + 5).min(got_ids.len())]),
        first_diff.map(|i| &exp_ids[i..(i + 5).min(exp_ids.len())])
    );
    assert_eq!(
        received(&pair.b, b_ord),
        expect,
        "ordered channel must deliver in order"
    );
    assert_eq!(received(&pair.a, a_ord), expect);
    let mut un = received(&pair.b, b_un);
    un.sort_by_key(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
    assert_eq!(
        un, expect,
        "unordered reliable channel must deliver everything"
    );
}

#[test]
fn partially_reliable_channel_gives_up_and_close_is_seen() {
    let lossy = ChannelConfig {
        label: "pr".into(),
        ordered: false,
        reliability: Reliability::MaxRetransmits(0),
        ..Default::default()
    };
    let net = NetConfig {
        loss: 0.1,
        ..Default::default()
    };
    let mut pair = pair(net, 12, vec![lossy]);
    assert!(
        pair.run_until(Duration::from_secs(20), |p| opened(&p.a).len() == 1
            && opened(&p.b).len() == 1)
    );
    let id = opened(&pair.a)[0].0;
    for i in 0..500u32 {
        pair.a
            .rtc
            .channel(id)
            .unwrap()
            .write(true, &msg(i, 100))
            .unwrap();
        pair.step();
    }
    pair.run_until(Duration::from_secs(10), |_| false);
    let got = received(&pair.b, id).len();
    assert!(
        got > 300 && got < 500,
        "got {got} of 500 with 10% loss and no retransmits"
    );
    pair.net.loss = 0.0;
    pair.a.rtc.channel(id).unwrap().close().unwrap();
    assert!(pair.run_until(Duration::from_secs(10), |p| {
        p.b.events.contains(&Ev::ChannelClose(id))
    }));
}

#[test]
fn oversize_message_is_refused() {
    let mut pair = pair(
        NetConfig::default(),
        13,
        vec![ChannelConfig {
            label: "x".into(),
            ..Default::default()
        }],
    );
    assert!(pair.run_until(Duration::from_secs(10), |p| opened(&p.a).len() == 1));
    let id = opened(&pair.a)[0].0;
    let big = vec![0u8; 256 * 1024 + 1];
    assert!(pair.a.rtc.channel(id).unwrap().write(true, &big).is_err());
}
