//! Deterministic cost of the engine's forwarding path, for instruction counting under
//! valgrind's callgrind (`scripts/icount-forward.sh` runs it and prints the figure):
//! one publisher packet → `LEGS` subscriber legs → their datagrams queued and flushed.
//!
//! A real [`Engine`] (one shard, the portable backend: valgrind does not run io_uring)
//! forwards for real `rtc-core` clients in this process (ICE, DTLS, SRTP over loopback):
//! one 1200-byte video publisher, `LEGS` subscribers. After the warm-up every subscriber
//! stops reading (`Client::deaf`: no feedback comes back, only the publisher's packets
//! reach the engine) and the publisher sends one packet at a time, waiting until the
//! engine has forwarded it to every leg before the next. So each measured shard
//! iteration is exactly: receive one datagram, SRTP-decrypt it, write it to each leg
//! (downtrack, header rewrite, SRTP encryption in the leg's `Rtc`), drain every leg's
//! `poll_output` into the backend's send batches and flush them.
//!
//! The script collects only inside the shard functions of that path
//! (`--toggle-collect` on `Shard::on_datagram`, `Shard::drain_touched` and the
//! backend's `flush`), so neither the clients nor the waiting is counted, and this
//! program zeroes the counts after the set-up and warm-up and dumps them after the
//! measured packets (`callgrind_control -z` / `-d`, when `ICOUNT_CALLGRIND_CONTROL`
//! is set).
//! What remains variable is what the engine's wall-clock timers add when they fire
//! inside the window (sender reports, the allocator's rate updates): most runs agree
//! within ~1 %, one in a few gets ~15 % more. The script runs it several times and
//! reports the minimum as the path's own cost.
//!
//! Steady state: the warm-up sends more packets than a leg's retransmission ring holds
//! (`rtx_buffer_packets`; none by default, NACKs are answered from the layer caches), so
//! every ring slot already has its buffer (the first pass over a ring allocates one per
//! slot; counting it would add ~400 instructions of `malloc` per packet that a running
//! leg never pays).
//!
//! The deaf subscribers send no ICE consent checks, and the engine drops a session 30 s
//! after its last one; callgrind on a loaded VM can take longer than that for the
//! measured packets. So every [`REFRESH`] of wall time the program dumps the counts so
//! far (`callgrind_control -d`: one part of the window), lets the clients run for a
//! moment (their overdue consent checks go out and are answered, they read what was
//! forwarded to them and send their feedback), then zeroes the counts and goes on. The
//! script adds up the parts; the refresh itself is in none of them.
//!
//! Cross-shard hand-off: with `ICOUNT_REMOTE_LEGS=N` the engine runs two shards and the
//! last `N` subscribers are placed on shard 1 (the publisher and the others on shard 0),
//! so each publisher packet is also handed to shard 1 once (`DataMsg::Batch`, counted
//! through the script's `Shard::on_data` toggle) and re-encrypted there. The difference
//! to the one-shard run with the same legs, times the legs, is the hand-off's cost per
//! handed-off packet.
//!
//! `icount_forward [PACKETS] [LEGS]` (default 200 packets, 50 legs).

use std::time::{Duration, Instant};

use engine::Engine;
use engine::Placement;
use engine::io::BackendPreference;
use test_support::{Client, VIDEO_PT, VIDEO_SSRC, drive, engine_config, fanout_room_placed};

/// Wall time between consent refreshes during the measured packets (the engine's consent
/// timeout is 30 s; a client checks every 4–6 s).
const REFRESH: Duration = Duration::from_secs(12);

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let packets = args.next().flatten().unwrap_or(200);
    let legs = args.next().flatten().unwrap_or(50);
    let remote = std::env::var("ICOUNT_REMOTE_LEGS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(legs);
    let cfg = engine_config(BackendPreference::Portable, if remote > 0 { 2 } else { 1 });
    // Past every slot of the legs' retransmission rings (see the module docs).
    let warm_up = cfg.rtx_buffer_packets + 16;
    let engine = Engine::start(cfg).expect("engine");
    // Under callgrind the handshakes run ~50 times slower than natively.
    let local = (legs - remote) as usize;
    let mut clients = fanout_room_placed(
        &engine,
        "icount",
        legs as usize,
        Duration::from_secs(600),
        |i| Placement::Shard(usize::from(i >= local)),
    );
    let payload = [0x5au8; 1200];
    let mut seq = 0u16;
    let mut send = |clients: &mut [test_support::Client]| {
        let p = &mut clients[0];
        p.write_rtp(
            VIDEO_PT,
            seq,
            3000 * u32::from(seq / 3),
            VIDEO_SSRC,
            seq % 3 == 2,
            &payload,
        );
        p.drain(Instant::now());
        seq = seq.wrapping_add(1);
    };
    // Warm-up: the legs start (keyframe wait ends at the first packet: one layer), the
    // pools, queues and retransmission rings reach their sizes, feedback settles.
    for _ in 0..warm_up {
        send(&mut clients);
        drive(&mut clients, Duration::from_millis(20), |_| false);
    }
    go_quiet(&mut clients);
    let forwarded = || engine.stats().expect("stats").rtp_forwarded();
    // Under callgrind (the script sets this): the counts so far (set-up, handshakes,
    // warm-up) are zeroed here and dumped after the measured packets.
    let control = std::env::var_os("ICOUNT_CALLGRIND_CONTROL").is_some();
    if control {
        callgrind_control("-z");
    }
    let mut start = forwarded();
    let mut target = start;
    let mut refreshed = Instant::now();
    for _ in 0..packets {
        if refreshed.elapsed() > REFRESH {
            // Outside the counted window (see the module docs).
            if control {
                callgrind_control("-d");
            }
            for c in &mut clients {
                c.deaf = false;
                c.block_stun = false;
            }
            let before = forwarded();
            drive(&mut clients, Duration::from_millis(1000), |_| false);
            go_quiet(&mut clients);
            // Anything forwarded meanwhile (none expected: no media is sent) is not counted.
            let uncounted = forwarded() - before;
            start += uncounted;
            target += uncounted;
            if control {
                callgrind_control("-z");
            }
            refreshed = Instant::now();
        }
        send(&mut clients);
        target += legs;
        let deadline = Instant::now() + Duration::from_secs(60);
        while forwarded() < target {
            assert!(
                Instant::now() < deadline,
                "packet not forwarded to every leg"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let fwd = forwarded() - start;
    if control {
        callgrind_control("-d");
    }
    println!(
        "forwarded {fwd} leg packets ({packets} publisher packets x {legs} legs, {remote} on shard 1)"
    );
    engine.shutdown();
}

/// Subscribers stop reading, nobody sends connectivity checks (the publisher goes on
/// sending media); then a moment for what is in flight to settle.
fn go_quiet(clients: &mut [Client]) {
    for c in clients.iter_mut() {
        c.block_stun = true;
    }
    for c in clients.iter_mut().skip(1) {
        c.deaf = true;
    }
    drive(clients, Duration::from_millis(200), |_| false);
}

/// Runs `callgrind_control FLAG <this process>` (zero `-z`, dump `-d`) and waits for it.
fn callgrind_control(flag: &str) {
    let status = std::process::Command::new("callgrind_control")
        .arg(flag)
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("callgrind_control runs");
    assert!(status.success(), "callgrind_control {flag} failed");
}
