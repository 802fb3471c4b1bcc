#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::rtcp::RtcpPacket;

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; 2048];
    for pkt in RtcpPacket::iter(data).flatten() {
        // A successful parse must re-serialise without panicking.
        let _ = pkt.write(&mut out);
        match pkt {
            RtcpPacket::TransportFeedback(t) => {
                let _ = t.iter().count();
            }
            RtcpPacket::Nack(n) => {
                let _ = n.lost().count();
            }
            RtcpPacket::Sdes(s) => {
                let _ = s.chunks().flat_map(|c| c.items()).count();
            }
            RtcpPacket::ExtendedReport(x) => {
                let _ = x.blocks().flat_map(|b| b.dlrr_items()).count();
            }
            RtcpPacket::Bye(b) => {
                let _ = b.ssrcs().count();
            }
            RtcpPacket::Remb(r) => {
                let _ = r.ssrcs().count();
            }
            RtcpPacket::Fir(f) => {
                let _ = f.entries().count();
            }
            _ => {}
        }
    }
});
