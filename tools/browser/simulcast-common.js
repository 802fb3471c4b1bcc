// Pieces shared by the simulcast browser drivers (demo-simulcast.js,
// demo-constrained.js): WHEP viewer pages and the publisher's per-layer send figures.
'use strict';

// Runs in a viewer page: plays `url` (a WHEP endpoint) in a muted <video>; stores
// the connection as window.viewer.
async function startViewer(url) {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const video = document.createElement('video');
  video.muted = true;
  video.autoplay = true;
  video.playsInline = true;
  document.body.appendChild(video);
  pc.ontrack = (e) => {
    if (e.track.kind === 'video') {
      video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
    }
  };
  window.viewer = { pc, video, error: null };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`${url}: ${res.status} ${text.trim()}`);
  await pc.setRemoteDescription({ type: 'answer', sdp: text });
  return {
    session: Number(res.headers.get('X-Session-Id')),
    shard: Number(res.headers.get('X-Shard')),
  };
}

// Runs in a viewer page: the video inbound-rtp figures of window.viewer.
async function viewerStats() {
  const v = window.viewer;
  const out = { connection: v.pc.connectionState, framesDecoded: 0, width: 0, height: 0 };
  const report = await v.pc.getStats();
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      Object.assign(out, {
        ssrc: s.ssrc,
        framesDecoded: s.framesDecoded || 0,
        keyFramesDecoded: s.keyFramesDecoded || 0,
        width: s.frameWidth || 0,
        height: s.frameHeight || 0,
        packetsReceived: s.packetsReceived || 0,
        packetsLost: s.packetsLost || 0,
        freezeCount: s.freezeCount || 0,
        totalFreezesDuration: s.totalFreezesDuration || 0,
        pliCount: s.pliCount || 0,
        nackCount: s.nackCount || 0,
      });
    }
  });
  return out;
}

// Opens `url` in a new page of `browser` named `name` (its warnings and errors are
// echoed with that name).
async function openPage(browser, name, url) {
  const page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'warning' || m.type() === 'error') console.log(`[${name} ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[${name} page error] ${e}`));
  await page.goto(url, { timeout: 10000 });
  return page;
}

// Waits (with the script's `waitFor`) until demo page `page` publishes and is
// connected; returns the publisher summary for the result (`id`, `shard`, `simulcast`).
async function waitPublishing(waitFor, page) {
  const st = await waitFor('A publishing', async () => {
    const s = await page.evaluate(() => window.demoState);
    if (s.error) throw new Error(`A: ${s.error}`);
    return { ok: s.publishing && s.connection === 'connected', info: s, s };
  });
  return { id: st.s.publisherId, shard: st.s.shard, simulcast: st.s.simulcast };
}

// A demo page's video outbound-rtp per layer, lowest first, and Chromium's send-side
// bandwidth estimate (bits/s) for the connection.
async function sending(page) {
  return page.evaluate(async () => {
    const out = { layers: [], bps: null };
    const pc = window.demoApp && window.demoApp.pc;
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.layers.push({
          rid: s.rid || null,
          width: s.frameWidth || 0,
          height: s.frameHeight || 0,
          framesEncoded: s.framesEncoded || 0,
          keyFramesEncoded: s.keyFramesEncoded || 0,
          pliCount: s.pliCount || 0,
          limitation: s.qualityLimitationReason || null,
        });
      }
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) {
        out.bps = s.availableOutgoingBitrate;
      }
    });
    const order = ['q', 'h', 'f'];
    out.layers.sort((x, y) => order.indexOf(x.rid) - order.indexOf(y.rid));
    return out;
  });
}

// One line of per-layer send figures: rid:WxH/frames/keyframes/plis(limitation).
function fmtSent(layers) {
  return layers.map((l) => `${l.rid}:${l.width}x${l.height}/${l.framesEncoded}f/${l.keyFramesEncoded}k/${l.pliCount}pli${l.limitation && l.limitation !== 'none' ? `(${l.limitation})` : ''}`).join(' ');
}

module.exports = { startViewer, viewerStats, openPage, waitPublishing, sending, fmtSent };
