#![no_main]
//! Drives the feedback units with arbitrary RTCP (TWCC feedback into the send
//! register and the estimator, report blocks into the sender register) and
//! arbitrary stored packets through the RTX builder.
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::feedback::{
    Bwe, BweConfig, NackRegister, ReceiveRegister, RtxParams, RtxSendBuffer, SenderRegister,
    TwccSendRegister,
};
use rtc_core::_internal::rtcp::{NackPair, RtcpPacket};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut twcc = TwccSendRegister::new(256);
    for i in 0..300u64 {
        twcc.next_seq(t0 + Duration::from_micros(i * 100), 1200);
    }
    let mut bwe = Bwe::new(BweConfig::default());
    let mut sender = SenderRegister::new(1);
    sender.on_sr_sent(t0, 0x1234_5678_0000_0000);
    for (i, pkt) in RtcpPacket::iter(data).flatten().enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 10);
        match pkt {
            RtcpPacket::TransportFeedback(fb) => {
                bwe.on_feedback(now, twcc.apply_feedback(&fb));
            }
            RtcpPacket::ReceiverReport(rr) => {
                for b in rr.reports.as_slice() {
                    let _ = sender.on_report_block(now, b);
                }
            }
            RtcpPacket::SenderReport(sr) => {
                let mut rx = ReceiveRegister::new(sr.ssrc);
                rx.on_sender_report(now, sr.info.ntp_time, sr.info.rtp_time);
                for b in sr.reports.as_slice() {
                    let _ = sender.on_report_block(now, b);
                    rx.update(now, u64::from(b.highest_seq), b.jitter, b.ssrc);
                }
                let _ = rx.report_block(now);
            }
            RtcpPacket::Nack(n) => {
                let mut reg = NackRegister::default();
                for s in n.lost() {
                    reg.on_packet(now, u64::from(s));
                }
                let mut out = [NackPair { pid: 0, blp: 0 }; 8];
                let _ = reg.poll_nack(now + Duration::from_secs(1), &mut out);
            }
            _ => {}
        }
    }
    // The raw input as a stored packet.
    let mut rtx = RtxSendBuffer::new(4, Duration::from_secs(3));
    rtx.store(t0, 7, data);
    let mut out = [0u8; 2048];
    let params = RtxParams {
        ssrc: 2,
        payload_type: 97,
        seq: 1,
    };
    let _ = rtx.build_rtx(t0, 7, params, &mut out);
});
