#![no_main]
use libfuzzer_sys::fuzz_target;
use rtc_core::_internal::srtp::{SrtpContext, SrtpProfile};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let profile = SrtpProfile::ALL[usize::from(selector) % SrtpProfile::ALL.len()];
    let km: Vec<u8> = (0..profile.keying_material_len()).map(|i| i as u8).collect();
    let Ok((_, mut rx)) = SrtpContext::pair_from_keying_material(profile, &km, true) else {
        return;
    };
    let mut rtp = packet.to_vec();
    let _ = rx.unprotect_rtp(&mut rtp);
    let mut rtcp = packet.to_vec();
    let _ = rx.unprotect_rtcp(&mut rtcp);
});
