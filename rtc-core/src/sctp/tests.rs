//! Unit tests, compiled only as part of the parent module under `#[cfg(test)]`.
//! Two transports wired together in memory with a virtual clock, seeded loss and
//! optional jitter (reordering).

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

const LATENCY: Duration = Duration::from_millis(5);

struct Net {
    /// DTLS client side.
    a: SctpTransport,
    /// DTLS server side.
    b: SctpTransport,
    now: Instant,
    ab: VecDeque<(Instant, Vec<u8>)>,
    ba: VecDeque<(Instant, Vec<u8>)>,
    loss: f64,
    /// Extra random delay per packet in `0..jitter`; packets overtake each other.
    jitter: Duration,
    rng: StdRng,
    ea: VecDeque<SctpEvent>,
    eb: VecDeque<SctpEvent>,
}

impl Net {
    fn new(loss: f64, seed: u64) -> Self {
        Net {
            a: SctpTransport::new(true, MIN_MAX_MESSAGE_SIZE),
            b: SctpTransport::new(false, MIN_MAX_MESSAGE_SIZE),
            // The virtual clock only needs an arbitrary starting point.
            now: Instant::now(),
            ab: VecDeque::new(),
            ba: VecDeque::new(),
            loss,
            jitter: Duration::ZERO,
            rng: StdRng::seed_from_u64(seed),
            ea: VecDeque::new(),
            eb: VecDeque::new(),
        }
    }

    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }

    /// Queues `p` (unless lost) for delivery after the latency plus random jitter,
    /// keeping the queue sorted by delivery time.
    fn send(&mut self, to_b: bool, p: Vec<u8>) {
        if self.lost() {
            return;
        }
        let mut at = self.now + LATENCY;
        if !self.jitter.is_zero() {
            at += self.jitter.mul_f64(self.rng.random::<f64>());
        }
        let q = if to_b { &mut self.ab } else { &mut self.ba };
        let pos = q.partition_point(|(t, _)| *t <= at);
        q.insert(pos, (at, p));
    }

    /// Does everything that is due at `now` until nothing more happens.
    fn settle(&mut self) {
        loop {
            let mut progress = false;
            while let Some(p) = self.a.poll_transmit(self.now) {
                progress = true;
                self.send(true, p);
            }
            while let Some(p) = self.b.poll_transmit(self.now) {
                progress = true;
                self.send(false, p);
            }
            while self.ab.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, p) = self.ab.pop_front().unwrap();
                let _ = self.b.handle_input(self.now, &p);
                progress = true;
            }
            while self.ba.front().is_some_and(|(t, _)| *t <= self.now) {
                let (_, p) = self.ba.pop_front().unwrap();
                let _ = self.a.handle_input(self.now, &p);
                progress = true;
            }
            if self.a.poll_timeout().is_some_and(|t| t <= self.now) {
                self.a.handle_timeout(self.now);
                progress = true;
            }
            if self.b.poll_timeout().is_some_and(|t| t <= self.now) {
                self.b.handle_timeout(self.now);
                progress = true;
            }
            while let Some(e) = self.a.poll_event() {
                self.ea.push_back(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.eb.push_back(e);
            }
            if !progress {
                return;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.ab.front().map(|(t, _)| *t),
            self.ba.front().map(|(t, _)| *t),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next deadline (at most `limit` ahead) and settles.
    fn step(&mut self, limit: Duration) {
        self.settle();
        let end = self.now + limit;
        let next = self.next_deadline().map_or(end, |t| t.min(end));
        self.now = self.now.max(next);
        self.settle();
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step(end - self.now);
        }
    }

    fn run_until(&mut self, max: Duration, mut done: impl FnMut(&mut Net) -> bool) {
        let end = self.now + max;
        while !done(self) {
            assert!(self.now < end, "condition not reached within {max:?}");
            self.step(Duration::from_millis(50));
        }
    }

    fn connect(loss: f64, seed: u64) -> Self {
        let mut n = Net::new(loss, seed);
        n.run_until(Duration::from_secs(60), |n| {
            n.a.is_connected() && n.b.is_connected()
        });
        n
    }
}

fn take_open(events: &mut VecDeque<SctpEvent>) -> Vec<(ChannelId, String, ChannelConfig)> {
    let mut out = Vec::new();
    events.retain(|e| match e {
        SctpEvent::ChannelOpen {
            id,
            label,
            protocol,
            config,
        } => {
            assert_eq!(label, &config.label);
            assert_eq!(protocol, &config.protocol);
            out.push((*id, label.clone(), config.clone()));
            false
        }
        _ => true,
    });
    out
}

fn take_data(events: &mut VecDeque<SctpEvent>) -> Vec<(ChannelId, bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = VecDeque::new();
    for e in events.drain(..) {
        match e {
            SctpEvent::ChannelData { id, binary, data } => out.push((id, binary, data)),
            other => rest.push_back(other),
        }
    }
    *events = rest;
    out
}

fn cfg(label: &str, ordered: bool, reliability: Reliability) -> ChannelConfig {
    ChannelConfig {
        label: label.into(),
        protocol: String::new(),
        ordered,
        reliability,
        negotiated: None,
    }
}

#[test]
fn connects() {
    let mut n = Net::new(0.0, 1);
    assert!(!n.a.is_connected());
    n.run_for(Duration::from_secs(2));
    assert!(n.a.is_connected());
    assert!(n.b.is_connected());
    assert_eq!(n.ea.pop_front(), Some(SctpEvent::Connected));
    assert_eq!(n.eb.pop_front(), Some(SctpEvent::Connected));
}

#[test]
fn connects_under_loss() {
    let mut n = Net::connect(0.3, 99);
    assert!(n.ea.contains(&SctpEvent::Connected));
    assert!(n.eb.contains(&SctpEvent::Connected));
    n.run_for(Duration::from_secs(1));
}

#[test]
fn channels_in_band_both_ways_and_negotiated() {
    let mut n = Net::new(0.0, 2);
    // Requested before the association is up: opened once it is.
    let a_ch =
        n.a.open_channel(ChannelConfig {
            protocol: "proto-a".into(),
            ..cfg("from-a", true, Reliability::Reliable)
        })
        .unwrap();
    assert_eq!(a_ch.0 % 2, 0, "DTLS client uses even stream ids");
    let neg_cfg = ChannelConfig {
        negotiated: Some(7),
        ..cfg("neg", true, Reliability::Reliable)
    };
    let a_neg = n.a.open_channel(neg_cfg.clone()).unwrap();
    assert_eq!(a_neg, ChannelId(7));
    n.run_for(Duration::from_secs(1));
    assert!(n.a.is_connected());

    let b_ch =
        n.b.open_channel(cfg("from-b", false, Reliability::MaxRetransmits(3)))
            .unwrap();
    assert_eq!(b_ch.0 % 2, 1, "DTLS server uses odd stream ids");
    let b_neg = n.b.open_channel(neg_cfg.clone()).unwrap();
    assert_eq!(b_neg, ChannelId(7));
    n.run_for(Duration::from_secs(1));

    let mut a_open = take_open(&mut n.ea);
    a_open.sort_by_key(|o| o.0);
    let mut b_open = take_open(&mut n.eb);
    b_open.sort_by_key(|o| o.0);
    let labels = |v: &[(ChannelId, String, ChannelConfig)]| {
        v.iter().map(|o| (o.0, o.1.clone())).collect::<Vec<_>>()
    };
    let mut expect = vec![
        (a_ch, "from-a".to_string()),
        (b_ch, "from-b".to_string()),
        (ChannelId(7), "neg".to_string()),
    ];
    expect.sort();
    assert_eq!(labels(&a_open), expect);
    assert_eq!(labels(&b_open), expect);
    // The remote side learned the configuration from DCEP.
    let b_view_of_a = b_open.iter().find(|o| o.0 == a_ch).unwrap();
    assert_eq!(b_view_of_a.2.protocol, "proto-a");
    assert!(b_view_of_a.2.ordered);
    let a_view_of_b = a_open.iter().find(|o| o.0 == b_ch).unwrap();
    assert!(!a_view_of_b.2.ordered);
    assert_eq!(a_view_of_b.2.reliability, Reliability::MaxRetransmits(3));
    assert_eq!(n.b.channel_label(a_ch), Some("from-a"));
    assert_eq!(n.a.channel_by_label("from-b"), Some(b_ch));

    // Messages both ways on every channel, including empty ones.
    for id in [a_ch, b_ch, ChannelId(7)] {
        n.a.write(id, false, b"hello").unwrap();
        n.a.write(id, true, &[1, 2, 3]).unwrap();
        n.a.write(id, true, &[]).unwrap();
        n.b.write(id, false, &[]).unwrap();
        n.b.write(id, true, b"world").unwrap();
    }
    n.run_for(Duration::from_secs(1));
    let at_b = take_data(&mut n.eb);
    let at_a = take_data(&mut n.ea);
    for id in [a_ch, b_ch, ChannelId(7)] {
        let mut got_b: Vec<_> = at_b
            .iter()
            .filter(|d| d.0 == id)
            .map(|d| (d.1, d.2.clone()))
            .collect();
        let mut want_b = vec![
            (false, b"hello".to_vec()),
            (true, vec![1, 2, 3]),
            (true, vec![]),
        ];
        if id == b_ch {
            // Unordered: compare as sets.
            got_b.sort();
            want_b.sort();
        }
        assert_eq!(got_b, want_b, "channel {id:?} a->b");
        let mut got_a: Vec<_> = at_a
            .iter()
            .filter(|d| d.0 == id)
            .map(|d| (d.1, d.2.clone()))
            .collect();
        got_a.sort();
        assert_eq!(got_a, vec![(false, vec![]), (true, b"world".to_vec())]);
    }
}

/// Deterministic message `seq` of a stream: size from a seeded RNG, first four bytes
/// the sequence number (when room), the rest a fill byte.
fn make_msg(rng: &mut StdRng, seq: u32) -> Vec<u8> {
    let size = if seq % 1700 == 850 {
        MIN_MAX_MESSAGE_SIZE
    } else {
        // Log-uniform between 1 B and 64 KiB.
        let e: f64 = rng.random_range(0.0..16.0);
        (2f64.powf(e) as usize).clamp(1, 64 * 1024)
    };
    let mut v = vec![(seq.wrapping_mul(31) % 251) as u8; size];
    if size >= 4 {
        v[..4].copy_from_slice(&seq.to_le_bytes());
    }
    v
}

struct Flow {
    id: ChannelId,
    ordered: bool,
    expected: Vec<Vec<u8>>,
    next_send: usize,
    received: Vec<Vec<u8>>,
}

#[test]
fn bulk_transfer_under_loss_and_reordering() {
    const PER_FLOW: usize = 5000; // 4 flows: 10,000 messages in each direction
    let mut n = Net::connect(0.05, 3);
    n.jitter = Duration::from_millis(4);
    let ordered =
        n.a.open_channel(cfg("ordered", true, Reliability::Reliable))
            .unwrap();
    let unordered =
        n.b.open_channel(cfg("unordered", false, Reliability::Reliable))
            .unwrap();
    n.run_until(Duration::from_secs(30), |n| {
        take_open(&mut n.ea).len() + take_open(&mut n.eb).len() > 0
            && n.a.channel_config(unordered).is_some()
            && n.b.channel_config(ordered).is_some()
    });
    let mut gen_rng = StdRng::seed_from_u64(77);
    let mut flows: Vec<(bool, Flow)> = Vec::new(); // (sent by a, flow)
    for (from_a, id, ord) in [
        (true, ordered, true),
        (false, ordered, true),
        (true, unordered, false),
        (false, unordered, false),
    ] {
        let expected = (0..PER_FLOW as u32)
            .map(|s| make_msg(&mut gen_rng, s))
            .collect();
        flows.push((
            from_a,
            Flow {
                id,
                ordered: ord,
                expected,
                next_send: 0,
                received: Vec::new(),
            },
        ));
    }
    let end = n.now + Duration::from_secs(3600);
    loop {
        // Keep at most ~512 KiB queued per channel and direction.
        for (from_a, f) in flows.iter_mut() {
            let tx = if *from_a { &mut n.a } else { &mut n.b };
            while f.next_send < PER_FLOW && tx.buffered_amount(f.id).unwrap() < 512 * 1024 {
                let m = &f.expected[f.next_send];
                assert_eq!(tx.write(f.id, true, m).unwrap(), m.len());
                f.next_send += 1;
            }
        }
        n.step(Duration::from_millis(20));
        for (from_a, events) in [(false, &mut n.ea), (true, &mut n.eb)] {
            for (id, binary, data) in take_data(events) {
                assert!(binary);
                let (_, f) = flows
                    .iter_mut()
                    .find(|(fa, f)| *fa == from_a && f.id == id)
                    .unwrap();
                f.received.push(data);
            }
        }
        if flows.iter().all(|(_, f)| f.received.len() == PER_FLOW) {
            break;
        }
        assert!(n.now < end, "bulk transfer did not finish");
    }
    for (_, f) in flows {
        if f.ordered {
            // In order and complete.
            assert!(f.received == f.expected, "ordered flow corrupted");
        } else {
            let mut got = f.received;
            let mut want = f.expected;
            got.sort();
            want.sort();
            assert!(got == want, "unordered flow incomplete");
        }
    }
    assert!(n.a.is_connected() && n.b.is_connected());
}

#[test]
fn partial_reliability_delivers_subset_and_never_blocks() {
    let mut n = Net::connect(0.10, 4);
    let rexmit =
        n.a.open_channel(cfg("rexmit0", false, Reliability::MaxRetransmits(0)))
            .unwrap();
    let timed =
        n.a.open_channel(cfg("lifetime", true, Reliability::MaxPacketLifetime(50)))
            .unwrap();
    let ctl =
        n.a.open_channel(cfg("ctl", true, Reliability::Reliable))
            .unwrap();
    n.run_until(Duration::from_secs(30), |n| {
        take_open(&mut n.ea).len();
        [rexmit, timed, ctl]
            .iter()
            .all(|id| n.b.channel_config(*id).is_some())
    });
    const N: u32 = 400;
    let mut got_rexmit = Vec::new();
    let mut got_timed = Vec::new();
    let mut got_ctl = Vec::new();
    macro_rules! collect {
        ($n:expr) => {
            for (id, _, data) in take_data(&mut $n.eb) {
                let seq = u32::from_le_bytes(data[..4].try_into().unwrap());
                if id == rexmit {
                    got_rexmit.push(seq);
                } else if id == timed {
                    got_timed.push(seq);
                } else if id == ctl {
                    got_ctl.push(seq);
                }
            }
        };
    }
    for seq in 0..N {
        let mut m = vec![0u8; 1000];
        m[..4].copy_from_slice(&seq.to_le_bytes());
        n.a.write(rexmit, true, &m).unwrap();
        n.a.write(timed, true, &m).unwrap();
        n.run_for(Duration::from_millis(2));
        collect!(n);
    }
    n.a.write(ctl, true, &u32::MAX.to_le_bytes()).unwrap();
    n.run_for(Duration::from_secs(20));
    collect!(n);
    assert_eq!(got_ctl, vec![u32::MAX], "reliable channel blocked");
    for (name, got) in [("rexmit", &got_rexmit), ("timed", &got_timed)] {
        assert!(
            !got.is_empty() && got.len() < N as usize,
            "{name}: expected a strict subset, got {}",
            got.len()
        );
        let mut dedup = got.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len(), "{name}: duplicates");
        assert!(got.iter().all(|s| *s < N));
    }
    // Ordered partially reliable channel still delivers in order.
    assert!(got_timed.windows(2).all(|w| w[0] < w[1]));
    // Nothing stays queued forever.
    assert_eq!(n.a.buffered_amount(rexmit).unwrap(), 0);
    assert_eq!(n.a.buffered_amount(timed).unwrap(), 0);
    // Later messages still flow.
    n.a.write(timed, true, &(N + 1).to_le_bytes()).unwrap();
    n.loss = 0.0;
    n.run_for(Duration::from_secs(2));
    collect!(n);
    assert_eq!(got_timed.last(), Some(&(N + 1)));
}

#[test]
fn buffered_amount_low_fires() {
    let mut n = Net::connect(0.0, 5);
    let id =
        n.a.open_channel(cfg("bal", true, Reliability::Reliable))
            .unwrap();
    n.run_for(Duration::from_millis(200));
    n.a.set_buffered_amount_low_threshold(id, 10_000).unwrap();
    for _ in 0..20 {
        n.a.write(id, true, &[7u8; 5000]).unwrap();
    }
    assert!(n.a.buffered_amount(id).unwrap() >= 100_000);
    assert!(!n.ea.contains(&SctpEvent::BufferedAmountLow { id }));
    n.run_for(Duration::from_secs(2));
    assert!(n.ea.contains(&SctpEvent::BufferedAmountLow { id }));
    assert_eq!(n.a.buffered_amount(id).unwrap(), 0);
    assert_eq!(take_data(&mut n.eb).len(), 20);
}

#[test]
fn close_is_seen_by_both_sides() {
    let mut n = Net::connect(0.0, 6);
    let id =
        n.a.open_channel(cfg("closing", true, Reliability::Reliable))
            .unwrap();
    let other =
        n.b.open_channel(cfg("other", true, Reliability::Reliable))
            .unwrap();
    n.run_for(Duration::from_millis(200));
    assert!(n.b.channel_config(id).is_some());
    n.a.write(id, false, b"last words").unwrap();
    n.a.close_channel(id).unwrap();
    assert_eq!(
        n.a.write(id, false, b"too late"),
        Err(SctpError::ChannelNotOpen(id))
    );
    n.run_for(Duration::from_secs(1));
    assert!(n.eb.contains(&SctpEvent::ChannelClose { id }));
    assert!(n.ea.contains(&SctpEvent::ChannelClose { id }));
    assert!(!n.eb.contains(&SctpEvent::ChannelClose { id: other }));
    let data = take_data(&mut n.eb);
    assert_eq!(data, vec![(id, false, b"last words".to_vec())]);
    assert_eq!(n.b.channel_config(id), None);
    assert_eq!(
        n.b.write(id, true, b"x"),
        Err(SctpError::UnknownChannel(id))
    );
    // Closing from the server side works too, and the other channel still flows.
    n.b.close_channel(other).unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(n.ea.contains(&SctpEvent::ChannelClose { id: other }));
    // A new channel can be opened afterwards.
    let again =
        n.a.open_channel(cfg("again", true, Reliability::Reliable))
            .unwrap();
    n.run_for(Duration::from_millis(200));
    n.a.write(again, true, b"ok").unwrap();
    n.run_for(Duration::from_millis(200));
    assert_eq!(take_data(&mut n.eb), vec![(again, true, b"ok".to_vec())]);
}

#[test]
fn oversized_message_rejected() {
    let mut n = Net::connect(0.0, 7);
    let id =
        n.a.open_channel(cfg("big", true, Reliability::Reliable))
            .unwrap();
    n.run_for(Duration::from_millis(200));
    let too_big = vec![0u8; MIN_MAX_MESSAGE_SIZE + 1];
    assert_eq!(
        n.a.write(id, true, &too_big),
        Err(SctpError::MessageTooLarge {
            size: MIN_MAX_MESSAGE_SIZE + 1,
            max: MIN_MAX_MESSAGE_SIZE
        })
    );
    let max = vec![9u8; MIN_MAX_MESSAGE_SIZE];
    n.a.write(id, true, &max).unwrap();
    n.b.set_remote_max_message_size(1000);
    let b_err = n.b.write(id, true, &[0u8; 1001]);
    assert_eq!(
        b_err,
        Err(SctpError::MessageTooLarge {
            size: 1001,
            max: 1000
        })
    );
    n.run_for(Duration::from_secs(1));
    let got = take_data(&mut n.eb);
    assert_eq!(got.len(), 1);
    assert!(got[0].2 == max);
}

#[test]
fn unknown_channel_and_bad_negotiated_id() {
    let mut n = Net::connect(0.0, 8);
    assert_eq!(
        n.a.write(ChannelId(40), true, b"x"),
        Err(SctpError::UnknownChannel(ChannelId(40)))
    );
    let neg = ChannelConfig {
        negotiated: Some(65535),
        ..cfg("x", true, Reliability::Reliable)
    };
    assert_eq!(
        n.a.open_channel(neg),
        Err(SctpError::StreamIdUnavailable(65535))
    );
    let neg = ChannelConfig {
        negotiated: Some(3),
        ..cfg("x", true, Reliability::Reliable)
    };
    n.a.open_channel(neg.clone()).unwrap();
    assert_eq!(
        n.a.open_channel(neg),
        Err(SctpError::StreamIdUnavailable(3))
    );
}

#[test]
fn malformed_input_never_panics() {
    let mut fresh = SctpTransport::new(false, 0);
    let now = Instant::now();
    assert_eq!(fresh.handle_input(now, &[]), Err(SctpError::PacketDropped));
    assert_eq!(
        fresh.handle_input(now, &[0u8; 40]),
        Err(SctpError::PacketDropped)
    );
    let mut n = Net::connect(0.0, 9);
    let mut rng = StdRng::seed_from_u64(10);
    for len in 0..300 {
        let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = n.a.handle_input(n.now, &junk);
        let _ = n.b.handle_input(n.now, &junk);
    }
    n.run_for(Duration::from_millis(100));
    assert!(n.a.is_connected() && n.b.is_connected());
}

#[test]
fn malformed_dcep_is_rejected() {
    let mut n = Net::connect(0.0, 11);
    // Inject raw DCEP from the client: garbage on stream 2, and a valid OPEN on odd
    // stream 5 (wrong parity for a DTLS client).
    let (_, assoc) = n.a.assoc.as_mut().unwrap();
    assoc.open_stream(2, Ppi::Dcep).unwrap();
    assoc
        .stream(2)
        .unwrap()
        .write_with_ppi(&[0x03, 0x00, 0x01], Ppi::Dcep)
        .unwrap();
    let open = DcepOpen {
        channel_type: ChannelType::Reliable,
        priority: PRIORITY_NORMAL,
        reliability_parameter: 0,
        label: "bad",
        protocol: "",
    };
    let mut buf = vec![0u8; open.encoded_len()];
    open.write(&mut buf).unwrap();
    assoc.open_stream(5, Ppi::Dcep).unwrap();
    assoc
        .stream(5)
        .unwrap()
        .write_with_ppi(&buf, Ppi::Dcep)
        .unwrap();
    n.run_for(Duration::from_secs(1));
    assert!(take_open(&mut n.eb).is_empty());
    assert_eq!(n.b.channel_config(ChannelId(2)), None);
    assert_eq!(n.b.channel_config(ChannelId(5)), None);
    assert!(n.b.is_connected());
    // A proper channel still works afterwards.
    let id =
        n.a.open_channel(cfg("good", true, Reliability::Reliable))
            .unwrap();
    n.run_for(Duration::from_millis(200));
    assert_eq!(n.b.channel_label(id), Some("good"));
}

#[test]
fn negotiated_data_before_peer_opens_is_kept() {
    let mut n = Net::connect(0.0, 12);
    let neg = ChannelConfig {
        negotiated: Some(9),
        ..cfg("late", true, Reliability::Reliable)
    };
    let id = n.a.open_channel(neg.clone()).unwrap();
    n.a.write(id, false, b"early").unwrap();
    n.run_for(Duration::from_millis(200));
    assert!(take_data(&mut n.eb).is_empty());
    assert_eq!(n.b.open_channel(neg).unwrap(), id);
    n.settle();
    let opens = take_open(&mut n.eb);
    assert_eq!(opens.len(), 1);
    assert_eq!(opens[0].0, id);
    assert_eq!(take_data(&mut n.eb), vec![(id, false, b"early".to_vec())]);
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn peer_abort_fails_association_and_closes_channels() {
    let mut n = Net::connect(0.0, 13);
    let id =
        n.a.open_channel(cfg("doomed", true, Reliability::Reliable))
            .unwrap();
    n.a.write(id, true, b"x").unwrap();
    // Capture a client->server packet to learn ports and the server's verification tag.
    let p = n.a.poll_transmit(n.now).unwrap();
    n.ab.push_back((n.now, p.clone()));
    n.run_for(Duration::from_millis(200));
    assert_eq!(take_open(&mut n.eb).len(), 1);
    let mut abort = p[..12].to_vec();
    abort.extend_from_slice(&[6, 0, 0, 4]); // ABORT chunk, no causes
    abort[8..12].fill(0);
    let crc = crc32c(&abort);
    abort[8..12].copy_from_slice(&crc.to_le_bytes());
    n.b.handle_input(n.now, &abort).unwrap();
    while let Some(e) = n.b.poll_event() {
        n.eb.push_back(e);
    }
    let evs: Vec<_> = n.eb.drain(..).collect();
    let close_at = evs
        .iter()
        .position(|e| *e == SctpEvent::ChannelClose { id });
    let fail_at = evs.iter().position(|e| {
        *e == SctpEvent::Failed {
            reason: FailureReason::Aborted,
        }
    });
    assert!(close_at.is_some() && fail_at.is_some(), "{evs:?}");
    assert!(close_at < fail_at);
    assert!(!n.b.is_connected());
    assert_eq!(
        n.b.write(id, true, b"y"),
        Err(SctpError::UnknownChannel(id))
    );
    assert_eq!(
        n.b.open_channel(cfg("no", true, Reliability::Reliable)),
        Err(SctpError::AssociationClosed)
    );
}

/// First four bytes of a test message as its sequence number.
fn seq_of(m: &[u8]) -> u32 {
    u32::from_be_bytes([m[0], m[1], m[2], m[3]])
}

/// A channel configured with only a label (`..Default::default()`) must be ordered
/// and reliable like a browser's default `RTCDataChannelInit`, on both sides, and
/// deliver in order under loss and reordering, also when small messages are mixed
/// with fragmented 200 KiB ones. (The derived `Default` once made it unordered, so
/// the peer got messages in arrival order.)
#[test]
fn default_channel_is_ordered_under_loss_and_reordering() {
    const COUNT: u32 = 600;
    let mut n = Net::connect(0.05, 21);
    n.jitter = Duration::from_millis(4);
    let id =
        n.a.open_channel(ChannelConfig {
            label: "plain".into(),
            ..Default::default()
        })
        .unwrap();
    // The opener may write before the DCEP ACK; the peer needs the OPEN first.
    n.run_until(Duration::from_secs(30), |n| {
        n.b.channel_config(id).is_some()
    });
    let mut rng = StdRng::seed_from_u64(5);
    let msgs: Vec<Vec<u8>> = (0..COUNT)
        .map(|i| {
            let size = if i % 150 == 7 {
                200 * 1024
            } else {
                rng.random_range(4..4000)
            };
            let mut m = vec![(i % 251) as u8; size];
            m[..4].copy_from_slice(&i.to_be_bytes());
            m
        })
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        n.a.write(id, true, m).unwrap();
        n.b.write(id, true, m).unwrap();
        if i % 10 == 0 {
            n.step(Duration::from_millis(1));
        }
    }
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    let end = n.now + Duration::from_secs(600);
    while at_b.len() < COUNT as usize || at_a.len() < COUNT as usize {
        assert!(n.now < end, "transfer did not finish");
        n.step(Duration::from_millis(20));
        at_b.extend(take_data(&mut n.eb).into_iter().map(|(_, _, d)| d));
        at_a.extend(take_data(&mut n.ea).into_iter().map(|(_, _, d)| d));
    }
    let seqs = |v: &[Vec<u8>]| v.iter().map(|m| seq_of(m)).collect::<Vec<_>>();
    let want: Vec<u32> = (0..COUNT).collect();
    assert_eq!(seqs(&at_b), want, "a -> b order");
    assert_eq!(seqs(&at_a), want, "b -> a order");
    assert!(at_b == msgs, "a -> b contents");
    assert!(at_a == msgs, "b -> a contents");
    for t in [&n.a, &n.b] {
        let c = t.channel_config(id).unwrap();
        assert!(c.ordered, "default channel must be ordered");
        assert_eq!(c.reliability, Reliability::Reliable);
    }
}
