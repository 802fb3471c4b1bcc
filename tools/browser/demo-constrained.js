// Browser test of bandwidth-driven layer selection: page A publishes 3-layer simulcast
// through the demo page; B plays it over WHEP on an unconstrained path, D over WHEP
// from a second Chromium whose path from the engine is shaped (tools/tests/
// demo_browser_constrained.rs runs D's browser in another network namespace behind a
// veth pair with a `tc tbf` qdisc on the engine's side).
// Usage: CONSTRAINED_CHROMIUM=WRAPPER SHAPE=CMD node demo-constrained.js BASE_URL ROOM
//   WRAPPER starts Chromium in D's namespace; `CMD RATE` changes the shaping (e.g.
//   `CMD 400kbit`).
//
// 1. A publishes; the script waits for it to encode all three layers.
// 2. While D's link is wide, D, like B, reaches a layer at least 640 wide.
// 3. D's link is narrowed to NARROW: within DROP_MS D decodes a layer at most 320
//    wide and keeps decoding (frames in each of FREEZE_WINDOWS 1 s windows after),
//    while B stays at least 640 wide: the engine moved D down on its own.
// Prints progress lines and one final `RESULT {json}` line; exits 1 on failure.
'use strict';
const { execFileSync } = require('child_process');
const { launch } = require('./chromium.js');
const { sleep, makeWaitFor, finish, run } = require('./driver.js');
const { startViewer, viewerStats, openPage, waitPublishing, sending, fmtSent } = require('./simulcast-common.js');

const LAYERS_MS = 20000;
const WIDE_MS = 20000;
const DROP_MS = 15000;
const FREEZE_WINDOWS = 4;
const NARROW = '400kbit';

const waitFor = makeWaitFor(15000, 250);

async function main() {
  const [base, room] = process.argv.slice(2);
  const wrapper = process.env.CONSTRAINED_CHROMIUM;
  const shape = process.env.SHAPE;
  if (!base || !room || !wrapper || !shape) {
    throw new Error('usage: CONSTRAINED_CHROMIUM=WRAPPER SHAPE=CMD node demo-constrained.js BASE_URL ROOM');
  }
  const result = { ok: false };
  // The demo is served on the veth address, not localhost: secure only by flag.
  const browser = await launch({ secureOrigin: base });
  const narrowBrowser = await launch({ executable: wrapper, secureOrigin: base });
  const both = { close: async () => { await narrowBrowser.close(); await browser.close(); } };
  let a;
  const viewers = {};
  const t0 = Date.now();
  const stats = async () => {
    const out = {};
    for (const [name, v] of Object.entries(viewers)) out[name] = await v.page.evaluate(viewerStats);
    return out;
  };
  const log = (what, s) => console.log(`t+${Date.now() - t0} ms ${what}: ` +
    Object.entries(s).map(([n, x]) => `${n} ${x.width}x${x.height} ${x.framesDecoded}f`).join(', '));
  try {
    a = await openPage(browser, 'A', `${base}/?room=${room}&autojoin=1`);
    result.publisher = await waitPublishing(waitFor, a);
    const pub = result.publisher.id;
    const layers = await waitFor('A encoding 3 layers', async () => {
      const { layers: l } = await sending(a);
      return { ok: l.filter((x) => x.width > 0 && x.framesEncoded > 0).length >= 3, info: l, l };
    }, LAYERS_MS);
    console.log(`A: publishing as #${pub}; sends ${fmtSent(layers.l)}`);

    for (const [name, b] of [['B', browser], ['D', narrowBrowser]]) {
      const page = await openPage(b, name, `${base}/?room=${room}`);
      const info = await page.evaluate(startViewer, `/whep/${room}/${pub}`);
      viewers[name] = { page, ...info };
      console.log(`${name}: WHEP -> session #${info.session} on shard ${info.shard}`);
    }
    result.B = { session: viewers.B.session };
    result.D = { session: viewers.D.session };

    // 2. Wide link: both reach a layer at least 640 wide.
    const wide = await waitFor('B and D >= 640 wide on the wide link', async () => {
      const s = await stats();
      return { ok: s.B.width >= 640 && s.D.width >= 640, info: s, s };
    }, WIDE_MS);
    log('wide link', wide.s);
    result.wideMs = Date.now() - t0;
    result.wide = { B: wide.s.B.width, D: wide.s.D.width };

    // 3. Narrow D's link; D must come down on its own, B must not.
    execFileSync(shape, [NARROW], { stdio: 'inherit' });
    const narrowedAt = Date.now();
    console.log(`t+${narrowedAt - t0} ms: D's link narrowed to ${NARROW}`);
    const down = await waitFor(`D <= 320 wide after narrowing to ${NARROW}`, async () => {
      const s = await stats();
      return { ok: s.D.width > 0 && s.D.width <= 320, info: s, s };
    }, DROP_MS);
    result.dropMs = Date.now() - narrowedAt;
    log('narrow link', down.s);
    const windows = { B: [], D: [] };
    const widths = { B: [], D: [] };
    let prev = down.s;
    for (let i = 0; i < FREEZE_WINDOWS; i += 1) {
      await sleep(1000);
      const s = await stats();
      for (const k of ['B', 'D']) {
        windows[k].push(s[k].framesDecoded - prev[k].framesDecoded);
        widths[k].push(s[k].width);
      }
      prev = s;
    }
    log('after', prev);
    result.framesPerWindow = windows;
    result.widths = widths;
    Object.assign(result.B, prev.B);
    Object.assign(result.D, prev.D);
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack || e);
    for (const [name, v] of Object.entries(viewers)) {
      result[`stats${name}`] = await v.page.evaluate(viewerStats).catch(() => null);
    }
  }
  await finish(both, result);
}

run(main);
