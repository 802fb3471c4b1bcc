#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (a handful of small files each).

Sources: the browser SDP fixtures in rtc-core/tests/fixtures/sdp/, the RFC 5769 STUN
vectors (copied from rtc-core/src/stun/tests.rs), and RTP/RTCP/SCTP/codec packets built
here the way the unit tests build them (RFC 3550/4585/5104/8888, RFC 4960, RFC 7741,
RFC 9628, RFC 6184). Re-run from the repository root after changing an input format:
    python3 fuzz/seeds/generate.py
Files are named by content; existing seeds (e.g. rtc_decrypted, sdp) are left alone.
"""
import os
import re
import struct
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
FIXTURES = os.path.join(ROOT, "rtc-core", "tests", "fixtures", "sdp")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def hexb(s):
    return bytes.fromhex("".join(s.split()))


# --- STUN: RFC 5769 section 2 vectors -------------------------------------------------
STUN = {
    "rfc5769_2_1_request": hexb("""00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf"""),
    "rfc5769_2_2_ipv4_response": hexb("""01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96"""),
    "rfc5769_2_3_ipv6_response": hexb("""01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c"""),
    "rfc5769_2_4_long_term": hexb("""00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66"""),
}

# --- RTP (RFC 3550) with a one-byte header extension (RFC 8285) -----------------------
def rtp(pt, seq, ts, ssrc, payload, marker=False, exts=()):
    b0 = 0x80
    ext = b""
    if exts:
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in exts)
        body += b"\0" * (-len(body) % 4)
        ext = struct.pack("!HH", 0xBEDE, len(body) // 4) + body
        b0 |= 0x10
    return struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc) + ext + payload


VP8_KEY = bytes([0x90, 0xE0, 0x80, 0x01, 0x00, 0x20]) + bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01]) + bytes(16)
VP8_DELTA = bytes([0x90, 0xE0, 0x80, 0x02, 0x01, 0x40]) + bytes([0x31, 0x01, 0x00]) + bytes(12)
VP9_KEY = bytes([0xAA, 0x80, 0x01, 0x00, 0x18, 0x01, 0x40, 0x01, 0x68, 0x01, 0x04, 0x01]) + bytes(12)  # I,B,V: SS
VP9_DELTA = bytes([0xE8, 0x80, 0x02, 0x20, 0x03]) + bytes(12)  # I,P,B,L flexible-less
H264_IDR = bytes([0x65, 0x88, 0x84, 0x00]) + bytes(12)
H264_STAP_A = bytes([0x78, 0x00, 0x05, 0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x00, 0x03, 0x68, 0xCE, 0x3C]) + bytes([0x00, 0x05, 0x65, 0x88, 0x84, 0x00, 0x10])
H264_FU_A = bytes([0x7C, 0x85, 0x88, 0x84, 0x00]) + bytes(12)
OPUS = bytes([0xF8, 0xFF, 0xFE]) + bytes(20)
AV1 = bytes([0x18, 0x0A, 0x0B, 0x00, 0x00, 0x00, 0x24, 0x4F, 0x7E, 0x7F, 0x00, 0x68, 0x83]) + bytes(4)

RTP = {
    "opus_audio_level": rtp(111, 1000, 48000, 0x11223344, OPUS, exts=[(1, bytes([0x80 | 30])), (3, b"0")]),
    "vp8_key_mid_twcc": rtp(96, 2000, 90000, 0x55667788, VP8_KEY, True, exts=[(3, b"1"), (5, struct.pack("!H", 7))]),
    "vp8_delta_rid": rtp(96, 2001, 93000, 0x55667788, VP8_DELTA, True, exts=[(4, b"h"), (3, b"1")]),
    "rtx_osn": rtp(97, 7, 93000, 0x99AABBCC, struct.pack("!H", 2001) + VP8_DELTA),
    "padding_only": bytes([0xA0, 96]) + struct.pack("!HII", 2002, 96000, 0x55667788) + bytes(11) + b"\x0c",
}

# --- RTCP (RFC 3550, 4585, 5104, 8888, draft-alvestrand-rmcat-remb) -------------------
def rtcp(count, pt, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, pt, len(body) // 4) + body


BLOCK = struct.pack("!IBBHIIII", 0x55667788, 5, 0, 3, 2001, 20, 0x12345678, 0x1000)
SR = rtcp(1, 200, struct.pack("!IIIIII", 0x11223344, 0xE8E8E8E8, 0x80000000, 90000, 10, 1200) + BLOCK)
RR = rtcp(1, 201, struct.pack("!I", 0x11223344) + BLOCK)
SDES = rtcp(1, 202, struct.pack("!I", 0x11223344) + bytes([1, 8]) + b"fuzzname" + b"\0\0")
BYE = rtcp(1, 203, struct.pack("!I", 0x11223344))
NACK = rtcp(1, 205, struct.pack("!IIHH", 0x11223344, 0x55667788, 2001, 0x0005))
PLI = rtcp(1, 206, struct.pack("!II", 0x11223344, 0x55667788))
FIR = rtcp(4, 206, struct.pack("!IIIB3x", 0x11223344, 0, 0x55667788, 3))
REMB = rtcp(15, 206, struct.pack("!II", 0x11223344, 0) + b"REMB" + bytes([1, 0x0B, 0x7B, 0x1F]) + struct.pack("!I", 0x55667788))
# Transport-wide CC: base 7, 4 packets, a run-length chunk (all "small delta"), deltas.
TWCC = rtcp(15, 205, struct.pack("!IIHH", 0x11223344, 0x55667788, 7, 4) + bytes([0, 0, 1, 0]) + struct.pack("!H", 0x2004) + bytes([4, 8, 0, 12]))
# Status vector chunk with a received-large-delta and a lost packet.
TWCC2 = rtcp(15, 205, struct.pack("!IIHH", 0x11223344, 0x55667788, 100, 3) + bytes([0, 0, 2, 1]) + struct.pack("!H", 0xE400) + bytes([5]) + struct.pack("!h", -40))
XR = rtcp(0, 207, struct.pack("!I", 0x11223344) + bytes([5, 0]) + struct.pack("!HIII", 3, 0x55667788, 0x12345678, 0x100)
          + bytes([4, 0]) + struct.pack("!HII", 2, 0xE8E8E8E8, 0x80000000))

RTCP = {
    "sr_sdes": SR + SDES,
    "rr_remb": RR + REMB,
    "rr_nack_pli": RR + NACK + PLI,
    "rr_twcc": RR + TWCC,
    "twcc_status_vector": RR + TWCC2,
    "fir_bye": RR + FIR + BYE,
    "xr_rrtr_dlrr": RR + XR,
}

# --- SCTP (RFC 4960) with CRC32c, and DCEP (RFC 8832) ---------------------------------
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def sctp(vtag, chunks):
    body = b""
    for t, flags, value in chunks:
        c = struct.pack("!BBH", t, flags, 4 + len(value)) + value
        body += c + b"\0" * (-len(c) % 4)
    pkt = struct.pack("!HHII", 5000, 5000, vtag, 0) + body
    return pkt[:8] + struct.pack("<I", crc32c(pkt)) + pkt[12:]


FWD_TSN_SUPPORTED = struct.pack("!HH", 0xC000, 4)
INIT = sctp(0, [(1, 0, struct.pack("!IIHHI", 0x1234ABCD, 131072, 1024, 1024, 0xA000)
                 + struct.pack("!HHB3x", 0x8008, 5, 0xC0) + FWD_TSN_SUPPORTED)])
DCEP_OPEN = bytes([0x03, 0x00]) + struct.pack("!HIHH", 0, 0, 4, 0) + b"chat"
DCEP_OPEN_PR = bytes([0x03, 0x81]) + struct.pack("!HIHH", 256, 3, 4, 4) + b"fuzzjson"
DATA = sctp(0x1234ABCD, [(0, 0x03, struct.pack("!IHHI", 0xA000, 0, 0, 50) + DCEP_OPEN)])
SACK_HB = sctp(0x1234ABCD, [(3, 0, struct.pack("!IIHH", 0xA000, 131072, 0, 0)), (4, 0, struct.pack("!HH", 1, 8) + b"beat")])
ABORT = sctp(0x1234ABCD, [(6, 0, struct.pack("!HH", 1, 8) + struct.pack("!HH", 0, 0))])
SCTP = {"init": INIT, "data_dcep_open": DATA, "sack_heartbeat": SACK_HB, "abort": ABORT,
        "dcep_open": DCEP_OPEN, "dcep_open_partial": DCEP_OPEN_PR, "dcep_ack": b"\x02"}


def main():
    for name, b in STUN.items():
        put("stun", name, b)
        put("demux", name, b)
    put("demux", "rtp_vp8", RTP["vp8_key_mid_twcc"])
    put("demux", "rtcp_sr", SR + SDES)
    put("demux", "dtls_record", bytes([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0x01]))

    for name, b in RTP.items():
        put("rtp", name, b)
    for name, b in RTCP.items():
        put("rtcp", name, b)
        put("feedback", name, b)

    for name, b in SCTP.items():
        put("sctp", name, b)

    # depacketize: [codec selector] + payload (0 Opus, 1 VP8, 2 VP9, 3 H.264, 4 AV1).
    for name, sel, p in [("opus", 0, OPUS), ("vp8_key", 1, VP8_KEY), ("vp9_key", 2, VP9_KEY),
                         ("h264_stap_a", 3, H264_STAP_A), ("h264_fu_a", 3, H264_FU_A), ("av1", 4, AV1)]:
        put("depacketize", name, bytes([sel]) + p)
    # Records [len, seq delta (+8 bias), time delta, marker] + payload: a two-packet VP8 frame.
    recs = bytes([len(VP8_KEY), 9, 0, 0]) + VP8_KEY + bytes([len(VP8_DELTA), 9, 0, 1]) + VP8_DELTA
    put("depacketize", "vp8_records", bytes([1]) + recs)

    # sfu_codec: [opts, picture id (2), tl0picidx] + payload.
    for name, p in [("vp8_key_15bit", VP8_KEY), ("vp8_delta", VP8_DELTA),
                    ("vp8_7bit_pid", bytes([0x90, 0x80, 0x05]) + VP8_DELTA[6:]),
                    ("vp9_key_ss", VP9_KEY), ("vp9_delta", VP9_DELTA),
                    ("h264_idr", H264_IDR), ("h264_stap_a", H264_STAP_A), ("h264_fu_a", H264_FU_A)]:
        put("sfu_codec", name, bytes([3, 0x12, 0x34, 0x56]) + p)

    # srtp_unprotect: [profile selector] + an RTP or RTCP packet with a 10-byte tag.
    put("srtp_unprotect", "rtp_aes_cm", bytes([0]) + RTP["vp8_key_mid_twcc"] + bytes(10))
    put("srtp_unprotect", "rtp_gcm", bytes([1]) + RTP["opus_audio_level"] + bytes(16))
    put("srtp_unprotect", "rtcp_aes_cm", bytes([0]) + SR + struct.pack("!I", 0x80000001) + bytes(10))

    # rtc_input: [state] + a datagram, for each of the four harness states.
    for state in range(4):
        put("rtc_input", f"stun_request_{state}", bytes([state]) + STUN["rfc5769_2_1_request"])
    put("rtc_input", "stun_response_1", bytes([1]) + STUN["rfc5769_2_2_ipv4_response"])
    put("rtc_input", "rtp_3", bytes([3]) + RTP["vp8_key_mid_twcc"])
    put("rtc_input", "rtcp_3", bytes([3]) + SR + SDES)

    # ice_tcp_framing: [opts] + records [split, bytes...] over an RFC 4571 stream.
    stream = b""
    for b in (STUN["rfc5769_2_1_request"], RTP["opus_audio_level"], SR + SDES):
        stream += struct.pack("!H", len(b)) + b
    for name, split in [("whole", 0), ("split_1", 1), ("split_3", 3), ("split_37", 37)]:
        out, rest = bytearray([0]), stream
        while rest:
            n = 255 if split == 0 else split
            out += bytes([split]) + rest[:n]
            rest = rest[n:]
        put("ice_tcp_framing", name, bytes(out))
    # Bulk chunks (split 0xff): maximal 65535-byte frames, then the buffer limit.
    put("ice_tcp_framing", "bulk_to_limit", bytes([1]) + bytes([0xFF, 0xFF]) * 6)
    put("ice_tcp_framing", "empty_frames", bytes([1, 6, 0, 0, 0, 1, 0x41, 0]))

    # ice_candidate: candidate lines from the browser fixtures.
    cands = []
    for f in sorted(os.listdir(FIXTURES)):
        with open(os.path.join(FIXTURES, f), encoding="utf-8") as fh:
            text = fh.read()
        for line in text.splitlines():
            if line.startswith("a=candidate:") and line not in cands:
                cands.append(line)
    cands += ["a=candidate:1 1 tcp 1518280447 192.0.2.2 9 typ host tcptype passive",
              "candidate:842163049 1 udp 1677729535 203.0.113.7 61234 typ srflx raddr 10.0.0.2 rport 61234",
              "candidate:3 1 udp 41885439 198.51.100.9 3478 typ relay raddr 203.0.113.7 rport 61234"]
    for i, c in enumerate(cands[:8]):
        put("ice_candidate", f"cand_{i}", c[2:] if c.startswith("a=") and i % 2 else c)

    # ice_fragment: trickle ICE sdpfrag bodies (RFC 8840 / RFC 9725 PATCH), built from
    # the candidates above: trickle, ICE restart with new credentials, end-of-candidates.
    frag_cands = [c if c.startswith("a=") else "a=" + c for c in cands[:4]]
    put("ice_fragment", "trickle", "a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n" + "".join(c + "\r\n" for c in frag_cands)
        + "a=end-of-candidates\r\n")
    put("ice_fragment", "restart", "a=ice-options:trickle ice2\r\na=ice-ufrag:n3wU\r\n"
        "a=ice-pwd:0123456789abcdefghijklmn\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\n"
        + frag_cands[0] + "\r\n")
    put("ice_fragment", "only_unknown", "a=gro")  # once a crash: the empty fragment
    put("ice_fragment", "eoc_only", "a=ice-lite\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=end-of-candidates\n")

    # jsep_accept_offer: [opts] + SDP. Offers from browsers (bit 0 clear), and browser
    # offers turned into answers (bit 0 set; a=setup:active) for our own offer.
    for f in sorted(os.listdir(FIXTURES)):
        with open(os.path.join(FIXTURES, f), "rb") as fh:
            text = fh.read()
        stem = f.rsplit(".", 1)[0]
        put("jsep_accept_offer", f"offer_{stem}", bytes([0]) + text)
        if f in ("chromium-156-av-datachannel.sdp", "firefox-esr-153-av-datachannel.sdp", "safari_offer.sdp"):
            put("jsep_accept_offer", f"offer_local_{stem}", bytes([2]) + text)
            answer = text.replace(b"a=setup:actpass", b"a=setup:active")
            put("jsep_accept_offer", f"answer_{stem}", bytes([1 if b"application" in text else 5]) + answer)

    # control_request: request lines from the control tests.
    for name, line in [("room_list", '{"id":1,"op":"room.list"}'),
                       ("room_create", '{"id":2,"op":"room.create","params":{"room":"a"}}'),
                       ("session_close", '{"id":"s","op":"session.close","params":{"session":404}}'),
                       ("events_subscribe", '{"id":3,"op":"events.subscribe"}'),
                       ("shard_list", '{"id":4,"op":"shard.list"}'),
                       ("error_line", '{"id":"s","error":{"code":"not_found","message":"no session 404"}}')]:
        put("control_request", name, line)

    # loadgen_http: URLs from the loadgen tests.
    for i, u in enumerate(["http://127.0.0.1:8080", "http://localhost/whip/x?y=1", "http://[::1]:9/a",
                           "http://sfu.example:8443/whep/room-1/session/17"]):
        put("loadgen_http", f"url_{i}", u)

    # loadgen_payload: payloads as tools::loadgen::payload writes them (trailer "LGN1").
    def stamped(prefix, size, publisher, kind, key, seq, send_ns):
        body = prefix + bytes((publisher + seq + i) & 0xFF for i in range(size - 32 - len(prefix)))
        t = b"LGN1" + struct.pack("!IBBQQH", publisher, kind, key, seq, send_ns, size)
        return body + t + struct.pack("!I", zlib.crc32(body + t) & 0xFFFFFFFF)
    put("loadgen_payload", "audio", stamped(bytes([0xF8]), 80, 7, 0, 0, 12, 123456789))
    key_tag = bytes([0x10]) + bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0x68, 0x01])
    put("loadgen_payload", "video_key", stamped(key_tag, 200, 7, 1, 1, 13, 123456790))
    put("loadgen_payload", "video_cont", stamped(bytes([0x00]), 120, 7, 1, 0, 14, 123456791))


if __name__ == "__main__":
    main()
