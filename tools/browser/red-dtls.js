// Opus RED and the DTLS version against rtc-demo + rtc-engine, in headless Chromium.
// Usage: node red-dtls.js BASE_URL ROOM
//
// One page publishes its fake microphone over WHIP and watches itself over WHEP twice:
// viewer "red" offers what Chromium offers by default (Opus and RED), viewer "plain"
// offers Opus only (setCodecPreferences). Each must decode audio (into a muted <audio>
// element: Chromium decodes only for a playing sink; muted, its energy reads 0). Reports, per peer
// connection, the answer's audio payload order, the codec getStats names for the audio
// stream, the transport's DTLS version (`tlsVersion`), SRTP cipher and the engine
// session id (`X-Session-Id`), then prints one `RESULT {json}` line.
'use strict';
const { launch } = require('./chromium.js');
const { makeWaitFor, finish, run } = require('./driver.js');

const waitFor = makeWaitFor(20000, 200);

async function main() {
  const [base, room] = process.argv.slice(2);
  if (!base || !room) throw new Error('usage: node red-dtls.js BASE_URL ROOM');
  const result = { ok: false };
  const browser = await launch();
  const page = await browser.context.newPage();
  page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  // Any same-origin page will do: the script talks to WHIP/WHEP with fetch.
  await page.goto(`${base}/rooms`, { timeout: 10000 });
  const setup = await page.evaluate(async (room) => {
    const gathered = (pc) => new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') resolve();
      });
    });
    const post = async (pc, url) => {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
      const body = await res.text();
      if (res.status !== 201) throw new Error(`${url}: ${res.status} ${body}`);
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
      const audio = body.split('\r\n').find((l) => l.startsWith('m=audio')) || '';
      const red = body.split('\r\n').find((l) => / red\/48000/.test(l)) || null;
      return { session: Number(res.headers.get('X-Session-Id')), mline: audio, redRtpmap: red };
    };
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pub = new RTCPeerConnection();
    pub.addTransceiver(stream.getAudioTracks()[0], { direction: 'sendonly' });
    const p = await post(pub, `/whip/${room}`);
    const viewer = async (onlyOpus) => {
      const pc = new RTCPeerConnection();
      const t = pc.addTransceiver('audio', { direction: 'recvonly' });
      // Chromium decodes received audio only for a playing sink (muted: no autoplay
      // gesture needed, still decoded).
      const el = document.createElement('audio');
      el.muted = true;
      el.srcObject = new MediaStream([t.receiver.track]);
      document.body.appendChild(el);
      el.play().catch((e) => console.log(`play: ${e}`));
      if (onlyOpus) {
        const caps = RTCRtpReceiver.getCapabilities('audio').codecs;
        t.setCodecPreferences(caps.filter((c) => c.mimeType.toLowerCase() === 'audio/opus'));
      }
      const v = await post(pc, `/whep/${room}/${p.session}`);
      v.offeredRed = /red\/48000/.test(pc.localDescription.sdp);
      return [pc, v];
    };
    const [redPc, red] = await viewer(false);
    const [plainPc, plain] = await viewer(true);
    window.pcs = { pub, red: redPc, plain: plainPc };
    return { pub: p, red, plain };
  }, room);
  result.setup = setup;
  console.log(`setup: ${JSON.stringify(setup)}`);

  const stats = () => page.evaluate(async () => {
    const out = {};
    for (const [name, pc] of Object.entries(window.pcs)) {
      const r = await pc.getStats();
      const byId = new Map();
      r.forEach((s) => byId.set(s.id, s));
      const o = { state: pc.connectionState };
      r.forEach((s) => {
        if ((s.type === 'outbound-rtp' || s.type === 'inbound-rtp') && s.kind === 'audio') {
          const c = byId.get(s.codecId);
          o.mimeType = c ? c.mimeType : null;
          o.packets = s.packetsSent ?? s.packetsReceived ?? 0;
          o.bytes = s.bytesSent ?? s.bytesReceived ?? 0;
          if (s.type === 'inbound-rtp') {
            o.samples = s.totalSamplesReceived || 0;
            o.concealed = s.concealedSamples || 0;
            o.energy = s.totalAudioEnergy || 0;
          }
        }
        if (s.type === 'transport') {
          o.tlsVersion = s.tlsVersion || null;
          o.srtpCipher = s.srtpCipher || null;
          o.dtlsCipher = s.dtlsCipher || null;
          o.dtlsRole = s.dtlsRole || null;
        }
      });
      out[name] = o;
    }
    return out;
  });

  // Two seconds of decoded audio on both viewers (48 kHz).
  const st = await waitFor('both viewers decode audio', async () => {
    const s = await stats();
    const ok = ['red', 'plain'].every((v) => s[v].samples > 96000);
    return { ok, info: s, s };
  });
  result.stats = st.s;
  result.ok = true;
  await finish(browser, result);
}

run(main);
