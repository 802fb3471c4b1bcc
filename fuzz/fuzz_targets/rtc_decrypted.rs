#![no_main]
//! Plaintext RTP and RTCP into a connected `Rtc`, past SRTP.
//!
//! `rtc_input` cannot forge SRTP, so its datagrams never reach the parsers behind
//! decryption. Here the target `a` is connected over SDP to a peer `b` (audio and
//! video with RTX, the default header extensions: mid, rid, transport-wide cc, audio
//! level, …) and `b` protects what the fuzzer writes with its real SRTP context (the
//! direct API's raw RTP write and the `_internal` raw RTCP write), so `a` decrypts
//! and parses it.
//!
//! Input: a first byte of options (bit 0: `a` in RTP mode; bit 1: `a` sends some
//! video first, so NACKs have something to retransmit), then chunks of
//! `[selector, length, bytes...]`. Selector bit 7 picks RTCP (else RTP); bits 0-1
//! pick an SSRC the harness writes into the packet (RTP: bytes 8..12 become `b`'s
//! video, video RTX or audio SSRC, or stay; RTCP: bytes 8..12, the media SSRC of
//! feedback, become `a`'s video or audio SSRC, or stay); bits 2-6 advance the clock
//! by that many milliseconds first. SSRCs are random per run, so the fuzzer could
//! not guess them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtc_core::dtls::DtlsCert;
use rtc_core::ice::Candidate;
use rtc_core::media::{Codec, MediaKind, Mid};
use rtc_core::rtp::ExtensionValues;
use rtc_core::sdp::Direction;
use rtc_core::{Input, Output, Protocol, Receive, Rtc};

const A_ADDR: &str = "127.0.0.1:5000";
const B_ADDR: &str = "127.0.0.1:6000";

fuzz_target!(|data: &[u8]| {
    let Some((&opts, mut rest)) = data.split_first() else {
        return;
    };
    let Some(mut h) = Harness::connected(opts & 1 == 1) else {
        return;
    };
    if opts & 2 == 2 {
        h.a_sends_video(64);
    }
    let ssrcs = h.ssrcs();
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let mut packet = tail[..n].to_vec();
        rest = &tail[n..];
        h.advance(Duration::from_millis(u64::from((sel >> 2) & 0x1f)));
        let rtcp = sel & 0x80 != 0;
        let pick = usize::from(sel & 3);
        let ssrc = if rtcp { ssrcs.a[pick] } else { ssrcs.b[pick] };
        if let (Some(ssrc), Some(field)) = (ssrc, packet.get_mut(8..12)) {
            field.copy_from_slice(&ssrc.to_be_bytes());
        }
        let mut api = h.b.direct_api();
        let _ = if rtcp {
            api.write_rtcp_packet(&packet)
        } else {
            api.write_rtp_packet(&packet)
        };
        h.exchange();
    }
    h.advance(Duration::from_millis(200));
});

/// SSRCs the selector bits choose from (`None`: leave the packet's own).
struct Ssrcs {
    /// `b`'s: video, video RTX, audio.
    b: [Option<u32>; 4],
    /// `a`'s: video, audio, video again.
    a: [Option<u32>; 4],
}

struct Harness {
    now: Instant,
    a: Rtc,
    b: Rtc,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    audio: Mid,
    video: Mid,
    rtp_mode: bool,
}

impl Harness {
    /// `a` offers audio and video to `b`; both connect in memory.
    fn connected(rtp_mode: bool) -> Option<Harness> {
        thread_local! {
            static CERTS: (DtlsCert, DtlsCert) =
                (DtlsCert::new_ecdsa_p256().expect("cert"), DtlsCert::new_ecdsa_p256().expect("cert"));
        }
        let (ca, cb) = CERTS.with(|c| c.clone());
        let now = Instant::now();
        let a_addr: SocketAddr = A_ADDR.parse().ok()?;
        let b_addr: SocketAddr = B_ADDR.parse().ok()?;
        let mut a = Rtc::builder().set_rtp_mode(rtp_mode).set_dtls_cert(ca).build(now).ok()?;
        let mut b = Rtc::builder().set_rtp_mode(true).set_dtls_cert(cb).build(now).ok()?;
        a.add_local_candidate(Candidate::host(a_addr, Protocol::Udp).ok()?);
        b.add_local_candidate(Candidate::host(b_addr, Protocol::Udp).ok()?);
        let mut api = a.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv);
        let video = api.add_media(MediaKind::Video, Direction::SendRecv);
        let (offer, pending) = api.apply()?;
        let answer = b.sdp_api().accept_offer(offer).ok()?;
        a.sdp_api().accept_answer(pending, answer).ok()?;
        let mut h = Harness { now, a, b, a_addr, b_addr, audio, video, rtp_mode };
        for _ in 0..200 {
            if h.a.is_connected() && h.b.is_connected() {
                // Both send streams exist once something was written; make sure
                // `b`'s are known to `a` by SSRC from the SDP already.
                h.a.stream_tx(video);
                h.a.stream_tx(audio);
                return Some(h);
            }
            h.exchange();
            h.now += Duration::from_millis(10);
            let _ = h.a.handle_input(Input::Timeout(h.now));
            let _ = h.b.handle_input(Input::Timeout(h.now));
        }
        None
    }

    fn ssrcs(&self) -> Ssrcs {
        let video = self.a.media_info(self.video);
        let audio = self.a.media_info(self.audio);
        let b_video = video.and_then(|m| m.remote_ssrcs.first().copied());
        let b_rtx = video.and_then(|m| m.remote_rtx.first().map(|&(_, rtx)| rtx));
        let b_audio = audio.and_then(|m| m.remote_ssrcs.first().copied());
        let a_video = self.a.tx_ssrc(self.video);
        let a_audio = self.a.tx_ssrc(self.audio);
        Ssrcs {
            b: [b_video, b_rtx, b_audio, None],
            a: [a_video, a_audio, None, a_video],
        }
    }

    /// `a` sends `count` small VP8 packets (kept for retransmission).
    fn a_sends_video(&mut self, count: u64) {
        let Some(pt) = self.a.media_info(self.video).and_then(|m| m.pt_for(&Codec::Vp8)) else {
            return;
        };
        for i in 0..count {
            let now = self.now;
            if self.rtp_mode {
                if let Some(mut tx) = self.a.stream_tx(self.video) {
                    let _ = tx.write_rtp(pt, i, (i * 3000) as u32, now, true, &ExtensionValues::default(), &[0x10, 0, 1, 2]);
                }
            } else if let Some(w) = self.a.writer(self.video) {
                let _ = w.write(pt, now, i * 3000, &[0x10, 0, 1, 2, 3]);
            }
            self.advance(Duration::from_millis(1));
        }
    }

    /// Moves the clock forward by `d` (timers fire) and exchanges datagrams.
    fn advance(&mut self, d: Duration) {
        if !d.is_zero() {
            self.now += d;
            let _ = self.a.handle_input(Input::Timeout(self.now));
            let _ = self.b.handle_input(Input::Timeout(self.now));
        }
        self.exchange();
    }

    /// Delivers everything both sides queued, a few rounds.
    fn exchange(&mut self) {
        for _ in 0..4 {
            let to_b = drain(&mut self.a);
            let to_a = drain(&mut self.b);
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            deliver(&mut self.b, self.now, self.a_addr, self.b_addr, &to_b);
            deliver(&mut self.a, self.now, self.b_addr, self.a_addr, &to_a);
        }
    }
}

/// Everything `rtc` wants to send; events are consumed (their payloads touched).
fn drain(rtc: &mut Rtc) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(o) = rtc.poll_output() {
        match o {
            Output::Transmit(t) => out.push(t.contents.to_vec()),
            Output::Timeout(_) => break,
            Output::Event(e) => {
                std::hint::black_box(format!("{e:?}"));
            }
        }
    }
    out
}

fn deliver(to: &mut Rtc, now: Instant, from: SocketAddr, at: SocketAddr, datagrams: &[Vec<u8>]) {
    for d in datagrams {
        let r = Receive { proto: Protocol::Udp, source: from, destination: at, contents: d };
        let _ = to.handle_input(Input::Receive(now, r));
    }
}
