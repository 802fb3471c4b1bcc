// Browser simulcast test of rtc-demo: page A publishes 3-layer simulcast through the
// demo page (its default: RIDs q, h, f of a 1280x720 fake camera); pages B and C play
// A over WHEP with a plain RTCPeerConnection and a fetch POST, C asking for the lowest
// layer only (`?max_layer=0`).
// Usage: node demo-simulcast.js BASE_URL ROOM
//
// 1. A publishes; the layers Chromium sends are logged (rid, size, frames encoded).
// 2. B and C subscribe. Chromium ramps its layers up over a few seconds on loopback:
//    the script waits up to LAYERS_MS for A to encode all three layers (going on with
//    fewer if it never does), then up to SETTLE_MS for B to decode a layer at least
//    640 wide and C one at most 320 wide.
// 3. No freeze: B's and C's framesDecoded grow in each of FREEZE_WINDOWS 1 s windows.
// Prints progress lines and one final `RESULT {json}` line; exits 1 on failure.
'use strict';
const { launch } = require('./chromium.js');
const { sleep, makeWaitFor, finish, run } = require('./driver.js');
const { startViewer, viewerStats, openPage, waitPublishing, sending, fmtSent } = require('./simulcast-common.js');

const STEP_TIMEOUT_MS = 15000;
const LAYERS_MS = 15000;
const SETTLE_MS = 10000;
const FREEZE_WINDOWS = 5;

const waitFor = makeWaitFor(STEP_TIMEOUT_MS, 200);

async function main() {
  const [base, room] = process.argv.slice(2);
  if (!base || !room) throw new Error('usage: node demo-simulcast.js BASE_URL ROOM');
  const result = { ok: false };
  const browser = await launch();
  const newPage = (name, url) => openPage(browser, name, url);
  const sent = async (page) => (await sending(page)).layers;
  let a;
  const viewers = {};
  try {
    // A publishes with the demo page's defaults (simulcast, 1280x720).
    a = await newPage('A', `${base}/?room=${room}&autojoin=1`);
    result.publisher = await waitPublishing(waitFor, a);
    const pub = result.publisher.id;
    console.log(`A: publishing as #${pub} on shard ${result.publisher.shard}`);
    const first = await waitFor('A encoding', async () => {
      const l = await sent(a);
      return { ok: l.some((x) => x.framesEncoded > 0), info: l, l };
    });
    console.log(`A sends: ${fmtSent(first.l)}`);

    // B (any layer) and C (?max_layer=0) play A over WHEP, from pages of the demo's
    // origin that do not join.
    for (const [name, query] of [['B', ''], ['C', '?max_layer=0']]) {
      const page = await newPage(name, `${base}/?room=${room}`);
      const url = `/whep/${room}/${pub}${query}`;
      const info = await page.evaluate(startViewer, url);
      viewers[name] = { page, ...info };
      console.log(`${name}: WHEP ${url} -> session #${info.session} on shard ${info.shard}`);
    }
    const stats = async (name) => viewers[name].page.evaluate(viewerStats);

    // Settle. Chromium may start below its bandwidth estimate and add the full layer a
    // few seconds in: first wait (up to LAYERS_MS) for A to encode all three layers,
    // then (up to SETTLE_MS) for B to show a layer at least 640 wide and C one at most
    // 320 wide. If Chromium never adds a layer, what it does send is asserted on (the
    // RESULT names the layers).
    const t0 = Date.now();
    let lastLog = 0;
    // Frames encoded per layer at least 1 s ago: a layer is live when it encoded
    // frames since then.
    let ref = { at: 0, frames: new Map() };
    let prevRef = ref;
    const sample = async () => {
      const b = await stats('B');
      const c = await stats('C');
      const { layers: l, bps } = await sending(a);
      const now = Date.now();
      if (now - ref.at >= 1000) {
        prevRef = ref;
        ref = { at: now, frames: new Map(l.map((x) => [x.rid, x.framesEncoded])) };
      }
      const live = prevRef.at === 0 ? []
        : l.filter((x) => x.framesEncoded > (prevRef.frames.get(x.rid) || 0));
      const top = Math.max(0, ...live.map((x) => x.width));
      if (now - lastLog >= 2000) {
        lastLog = now;
        console.log(`t+${now - t0} ms: A sends ${fmtSent(l)} (estimate ${bps} bps); ` +
          `B ${b.width}x${b.height} ${b.framesDecoded}f; C ${c.width}x${c.height} ${c.framesDecoded}f`);
      }
      return { b, c, l, live, top, bps };
    };
    const layers = await waitFor('A encoding 3 layers', async () => {
      const x = await sample();
      return { ok: x.live.length >= 3, info: x.l, x };
    }, LAYERS_MS).catch(async () => ({ x: await sample() }));
    result.layersMs = Date.now() - t0;
    result.liveRids = layers.x.live.map((x) => x.rid);
    console.log(`A encodes ${result.liveRids.join(',')} after ${result.layersMs} ms`);
    const settled = await waitFor('B >= 640 wide and C <= 320 wide', async () => {
      const x = await sample();
      const ok = x.b.framesDecoded > 0 && x.b.width >= 640 &&
        x.c.framesDecoded > 0 && x.c.width > 0 && x.c.width <= 320;
      return { ok, info: { b: x.b, c: x.c, sent: x.l }, ...x };
    }, SETTLE_MS);
    result.settleMs = Date.now() - t0;
    console.log(`settled after ${result.settleMs} ms: B ${settled.b.width}x${settled.b.height}, ` +
      `C ${settled.c.width}x${settled.c.height}, widest layer sent ${settled.top}`);

    // No freeze: frames decoded in every 1 s window. Also noted: whether B reaches
    // the widest layer A encodes (the engine raises a viewer's layer only as its
    // bandwidth estimate grows).
    const windows = { B: [], C: [] };
    let prev = { B: settled.b.framesDecoded, C: settled.c.framesDecoded };
    const widths = { B: [], C: [] };
    const top = [];
    for (let i = 0; i < FREEZE_WINDOWS; i += 1) {
      await sleep(1000);
      const x = await sample();
      top.push(x.top);
      for (const [name, st] of [['B', x.b], ['C', x.c]]) {
        windows[name].push(st.framesDecoded - prev[name]);
        widths[name].push(st.width);
        prev[name] = st.framesDecoded;
      }
    }
    result.topSent = top;
    console.log(`frames per 1 s window: B ${windows.B.join(',')} C ${windows.C.join(',')}`);
    result.framesPerWindow = windows;
    result.widths = widths;
    result.B = await stats('B');
    result.C = await stats('C');
    result.B.session = viewers.B.session;
    result.C.session = viewers.C.session;
    result.sent = await sent(a);
    result.outgoingBps = (await sending(a)).bps;
    console.log(`A sends: ${fmtSent(result.sent)} (estimate ${result.outgoingBps} bps)`);
    console.log(`B: ${JSON.stringify(result.B)}`);
    console.log(`C: ${JSON.stringify(result.C)}`);
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack || e);
    if (a) result.stateA = await a.evaluate(() => window.demoState).catch(() => null);
    for (const [name, v] of Object.entries(viewers)) {
      result[`stats${name}`] = await v.page.evaluate(viewerStats).catch(() => null);
    }
  }
  await finish(browser, result);
}

run(main);
