// Browser test of WHIP trickle ICE and ICE restart through PATCH (RFC 9725 §4.3).
// Usage: node demo-ice-restart.js BASE_URL ROOM
//
// One headless Chromium page (at the demo's origin, so fetch needs no CORS):
// 1. OPTIONS on the WHIP endpoint must advertise the configured ICE server (Link).
// 2. A publisher POSTs its offer *without candidates* as soon as it is created, then
//    trickles every candidate Chromium gathers via PATCH (If-Match: the ETag), ending
//    with a=end-of-candidates. Each PATCH must answer 204.
// 3. A viewer (WHEP) subscribes and must decode > 30 frames.
// 4. Twice: the publisher restarts ICE (restartIce + new offer), sends only the new
//    credentials and candidates by PATCH (If-Match: *), must get 200 with the engine's
//    fragment and a new ETag, applies it as the new answer, and must reconnect with the
//    new credentials (its transport stats name the new local ufrag) while the viewer's
//    framesDecoded keeps increasing (> 30 more frames after each restart).
// Prints progress lines and one final `RESULT {json}` line; exits 1 on failure.
'use strict';
const { launch } = require('./chromium.js');
const { makeWaitFor, finish, run } = require('./driver.js');

const STEP_TIMEOUT_MS = 20000;
const waitFor = makeWaitFor(STEP_TIMEOUT_MS, 100);

// Runs in the page: sets up `window.t` with the publisher, the viewer and helpers.
async function setup(room) {
  const FRAG = 'application/trickle-ice-sdpfrag';
  const t = { log: [], patches: [], restarts: [] };
  window.t = t;
  const opts = await fetch(`/whip/${room}`, { method: 'OPTIONS' });
  t.link = opts.headers.get('Link');

  const pub = new RTCPeerConnection();
  t.pub = pub;
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: false });
  for (const track of media.getTracks()) pub.addTransceiver(track, { direction: 'sendonly' });
  t.pending = [];
  t.eoc = false;
  // Candidates gathered before the POST answered wait for its Location and ETag.
  pub.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      t.pending.push(e.candidate);
    } else {
      t.eoc = true;
    }
    t.flush();
  };
  let flushing = false;
  t.flush = async () => {
    // During a restart the new candidates wait for the engine's answer (and new ETag).
    if (flushing || !t.location || t.restarting) return;
    flushing = true;
    try {
      while (t.pending.length || (t.eoc && !t.eocSent)) {
        const cands = t.pending.splice(0);
        const eoc = t.eoc && !t.eocSent;
        // Only the first (bundle-tag) section carries candidates under max-bundle.
        const first = cands.filter((c) => c.sdpMLineIndex === 0 || c.sdpMid === t.mid);
        if (!first.length && !eoc) continue;
        const ice = t.iceOf(pub.localDescription.sdp);
        let body = `a=ice-ufrag:${ice.ufrag}\r\na=ice-pwd:${ice.pwd}\r\nm=${ice.mline}\r\na=mid:${t.mid}\r\n`;
        for (const c of first) body += `a=${c.candidate}\r\n`;
        if (eoc) body += 'a=end-of-candidates\r\n';
        const r = await fetch(t.location, {
          method: 'PATCH',
          headers: { 'Content-Type': FRAG, 'If-Match': t.etag },
          body,
        });
        t.patches.push({ status: r.status, candidates: first.length, eoc, ufrag: ice.ufrag });
        if (eoc) t.eocSent = true;
      }
    } catch (e) {
      t.error = `trickle: ${e}`;
    } finally {
      flushing = false;
    }
  };
  // The ICE credentials and the first m= line of an SDP.
  t.iceOf = (sdp) => {
    const line = (re) => (sdp.match(re) || [])[1];
    return {
      ufrag: line(/a=ice-ufrag:(\S+)/),
      pwd: line(/a=ice-pwd:(\S+)/),
      mline: line(/^m=(.*?)\r?$/m),
    };
  };
  const offer = await pub.createOffer();
  await pub.setLocalDescription(offer);
  t.mid = pub.getTransceivers()[0].mid;
  // The offer goes out at once, without a single candidate: everything is trickled.
  const bare = offer.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates').join('\r\n');
  const posted = await fetch(`/whip/${room}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: bare });
  if (posted.status !== 201) throw new Error(`WHIP POST: ${posted.status} ${await posted.text()}`);
  t.location = posted.headers.get('Location');
  t.etag = posted.headers.get('ETag');
  t.resource = t.location.split('/').pop();
  t.answer = await posted.text();
  await pub.setRemoteDescription({ type: 'answer', sdp: t.answer });
  t.flush();

  // ICE restart through PATCH: new local credentials, only ICE data on the wire.
  t.restart = async () => {
    t.restarting = true;
    t.pending = [];
    t.eoc = false;
    t.eocSent = false;
    pub.restartIce();
    const o = await pub.createOffer();
    await pub.setLocalDescription(o);
    const ice = t.iceOf(o.sdp);
    const body = `a=ice-options:trickle\r\na=group:BUNDLE ${t.mid}\r\nm=${ice.mline}\r\na=mid:${t.mid}\r\na=ice-ufrag:${ice.ufrag}\r\na=ice-pwd:${ice.pwd}\r\n`;
    const r = await fetch(t.location, { method: 'PATCH', headers: { 'Content-Type': FRAG, 'If-Match': '*' }, body });
    const text = await r.text();
    const entry = { status: r.status, type: r.headers.get('Content-Type'), oldEtag: t.etag, etag: r.headers.get('ETag'), localUfrag: ice.ufrag };
    t.restarts.push(entry);
    if (r.status !== 200) throw new Error(`restart PATCH: ${r.status} ${text}`);
    const theirs = t.iceOf(text);
    entry.remoteUfrag = theirs.ufrag;
    const cands = text.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
    // The previous answer with the engine's new credentials and candidates.
    let sdp = t.answer
      .replace(/a=ice-ufrag:\S+/g, `a=ice-ufrag:${theirs.ufrag}`)
      .replace(/a=ice-pwd:\S+/g, `a=ice-pwd:${theirs.pwd}`)
      .split('\r\n').filter((l) => !l.startsWith('a=candidate:')).join('\r\n');
    // Candidates go into the first section, before its end-of-candidates.
    sdp = sdp.replace(`a=mid:${t.mid}\r\n`, `a=mid:${t.mid}\r\n${cands.map((c) => c + '\r\n').join('')}`);
    t.answer = sdp;
    t.etag = entry.etag;
    await pub.setRemoteDescription({ type: 'answer', sdp });
    t.restarting = false;
    t.flush();
  };
  t.pubTransport = async () => {
    const stats = await pub.getStats();
    let out = null;
    stats.forEach((s) => {
      if (s.type === 'transport') out = { ufrag: s.iceLocalUsernameFragment, state: s.iceState, dtls: s.dtlsState, pairChanges: s.selectedCandidatePairChanges };
    });
    return { ...out, conn: pub.connectionState };
  };

  // The viewer: WHEP with a complete offer (gathering finished first).
  const view = new RTCPeerConnection();
  t.view = view;
  view.addTransceiver('video', { direction: 'recvonly' });
  await view.setLocalDescription(await view.createOffer());
  await new Promise((res) => {
    if (view.iceGatheringState === 'complete') return res();
    view.onicegatheringstatechange = () => view.iceGatheringState === 'complete' && res();
  });
  t.subscribe = async () => {
    const r = await fetch(`/whep/${room}/${t.resource}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: view.localDescription.sdp });
    if (r.status !== 201) return `WHEP POST: ${r.status} ${await r.text()}`;
    await view.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    return null;
  };
  t.frames = async () => {
    const stats = await view.getStats();
    let n = 0;
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') n = s.framesDecoded || 0;
    });
    return n;
  };
}

async function main() {
  const [base, room] = process.argv.slice(2);
  if (!base || !room) throw new Error('usage: node demo-ice-restart.js BASE_URL ROOM');
  const result = { ok: false };
  const browser = await launch();
  const page = await browser.context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'warning' || m.type() === 'error') console.log(`[page ${m.type()}] ${m.text()}`);
  });
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  await page.goto(`${base}/rooms`, { timeout: 10000 });
  await page.evaluate(setup, room);
  const t = (expr) => page.evaluate(expr);
  result.link = await t(() => window.t.link);

  // Trickle: every candidate and the end marker were PATCHed (204), and ICE connects.
  const trickled = await waitFor('publisher connected with trickled candidates', async () => {
    const s = await t(async () => ({ patches: window.t.patches, eocSent: !!window.t.eocSent, error: window.t.error, tr: await window.t.pubTransport() }));
    if (s.error) throw new Error(s.error);
    return { ok: s.eocSent && s.tr.conn === 'connected', info: s, s };
  });
  result.trickle = trickled.s.patches;
  console.log(`publisher connected; trickle PATCHes: ${JSON.stringify(result.trickle)}`);

  const err = await t(() => window.t.subscribe());
  if (err) throw new Error(err);
  let frames = (await waitFor('viewer decoding', async () => {
    const n = await t(() => window.t.frames());
    return { ok: n > 30, info: n, n };
  })).n;
  result.framesBefore = frames;
  console.log(`viewer decoded ${frames} frames`);

  result.afterRestart = [];
  for (let i = 0; i < 2; i++) {
    await t(() => window.t.restart());
    const r = await page.evaluate((k) => window.t.restarts[k], i);
    console.log(`restart ${i + 1}: ${JSON.stringify(r)}`);
    // Reconnected with the new local credentials...
    const tr = await waitFor(`publisher reconnected after restart ${i + 1}`, async () => {
      const s = await t(() => window.t.pubTransport());
      return { ok: s.conn === 'connected' && s.ufrag === r.localUfrag, info: s, s };
    });
    // ...and the viewer keeps decoding.
    const from = frames;
    frames = (await waitFor(`viewer decoding after restart ${i + 1}`, async () => {
      const n = await t(() => window.t.frames());
      return { ok: n > from + 30, info: { from, n }, n };
    })).n;
    result.afterRestart.push({ ...r, transport: tr.s, frames });
    console.log(`restart ${i + 1}: reconnected (${JSON.stringify(tr.s)}), viewer at ${frames} frames`);
  }
  result.patchesAfter = await t(() => window.t.patches);
  result.ok = true;
  await finish(browser, result);
}

run(main);
