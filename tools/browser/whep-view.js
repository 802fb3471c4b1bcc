// Watches one publisher through rtc-demo's WHEP endpoint in headless Chromium and
// reports what the page decoded.
// Usage: node whep-view.js BASE_URL ROOM PUBLISHER [seconds]
// Prints `RESULT {"ok":true,"frameWidth":320,"frameHeight":240,"framesDecoded":N}` once
// frames were decoded (or `RESULT {"ok":false,...}` at the time limit).
'use strict';
const { launch } = require('./chromium.js');

async function main() {
  const [base, room, publisher, secs] = process.argv.slice(2);
  if (!publisher) throw new Error('usage: node whep-view.js BASE_URL ROOM PUBLISHER [seconds]');
  const seconds = Number(secs || 30);
  const browser = await launch();
  try {
    const page = await browser.context.newPage();
    page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
    await page.goto(`${base}/rooms`, { timeout: 15000 });
    const result = await page.evaluate(async ({ room, publisher, seconds }) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction: 'recvonly' });
      await pc.setLocalDescription(await pc.createOffer());
      const res = await fetch(`/whep/${room}/${publisher}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
      if (res.status !== 201) {
        return { ok: false, status: res.status, error: await res.text() };
      }
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      const end = Date.now() + seconds * 1000;
      let last = {};
      while (Date.now() < end) {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') {
            last = {
              frameWidth: s.frameWidth || 0,
              frameHeight: s.frameHeight || 0,
              framesDecoded: s.framesDecoded || 0,
              packetsReceived: s.packetsReceived || 0,
            };
          }
        });
        if (last.framesDecoded > 10 && last.frameWidth > 0) {
          pc.close();
          return { ok: true, ...last };
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      pc.close();
      return { ok: false, connection: pc.connectionState, ...last };
    }, { room, publisher, seconds });
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.log(`RESULT ${JSON.stringify({ ok: false, error: String(e && e.stack || e) })}`);
  process.exit(1);
});
