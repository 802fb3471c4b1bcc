// Browser end-to-end test of rtc-demo: headless Chromium pages join one room through the
// demo page (WHIP publish + WHEP per other publisher).
// Usage: node demo-e2e.js BASE_URL ROOM
//
// 1. Pages A and B join; each must decode > 30 frames of the other's video and receive
//    audio packets.
// 2. Page C joins late; it must get video from A and B (time to first frame measured
//    from its WHEP subscription), and A and B must get C's.
// 3. B presses Leave and closes; B must disappear from A's and C's pages.
// Prints progress lines and one final `RESULT {json}` line; exits 1 on failure.
'use strict';
const { launch } = require('./chromium.js');
const { makeWaitFor, finish, run } = require('./driver.js');

const STEP_TIMEOUT_MS = 15000;

async function state(page) {
  return page.evaluate(() => window.demoState);
}

const waitFor = makeWaitFor(STEP_TIMEOUT_MS, 100);

function remoteOf(st, id) {
  return (st.remotes || []).find((r) => r.id === id);
}

async function main() {
  const [base, room] = process.argv.slice(2);
  if (!base || !room) throw new Error('usage: node demo-e2e.js BASE_URL ROOM');
  const result = { ok: false };
  const browser = await launch();
  const pages = {};
  const open = async (name) => {
    const page = await browser.context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'warning' || m.type() === 'error') console.log(`[${name} ${m.type()}] ${m.text()}`);
    });
    page.on('pageerror', (e) => console.log(`[${name} page error] ${e}`));
    await page.goto(`${base}/?room=${room}&autojoin=1&w=320&h=240`, { timeout: 10000 });
    const st = await waitFor(`${name} publishing`, async () => {
      const s = await state(page);
      if (s.error) throw new Error(`${name}: ${s.error}`);
      return { ok: s.publishing && s.publisherId != null, info: s, s };
    });
    console.log(`${name}: publishing as #${st.s.publisherId} on shard ${st.s.shard}`);
    pages[name] = { page, id: st.s.publisherId, shard: st.s.shard, joinedAt: Date.now() };
    return pages[name];
  };

  // Sees `other` decoding more than `frames` frames and receiving audio.
  const sees = (viewer, other, frames) => async () => {
    const s = await state(viewer.page);
    const r = remoteOf(s, other.id);
    // Decoded frames must also reach the tile's <video> element (a stream decoded into
    // no track would count frames but show nothing).
    const ok = !!r && r.framesDecoded > frames && r.audioPackets > 0 &&
      r.rendered.width > 0 && r.rendered.time > 0;
    return { ok, info: { viewer: s.publisherId, remote: r }, r };
  };

  try {
    const a = await open('A');
    const b = await open('B');
    result.publishers = { A: { id: a.id, shard: a.shard }, B: { id: b.id, shard: b.shard } };

    const ab = await waitFor('A decoding B', sees(a, b, 30));
    const ba = await waitFor('B decoding A', sees(b, a, 30));
    result.aSeesB = ab.r;
    result.bSeesA = ba.r;
    console.log(`A sees B: ${ab.r.framesDecoded} frames, ${ab.r.audioPackets} audio packets`);
    console.log(`B sees A: ${ba.r.framesDecoded} frames, ${ba.r.audioPackets} audio packets`);

    const c = await open('C');
    result.publishers.C = { id: c.id, shard: c.shard };
    const cA = await waitFor('C decoding A', sees(c, a, 0));
    const cB = await waitFor('C decoding B', sees(c, b, 0));
    result.lateJoinMs = Date.now() - c.joinedAt;
    const s = await state(c.page);
    result.cFirstFrameMs = {
      A: remoteOf(s, a.id).firstFrameMs,
      B: remoteOf(s, b.id).firstFrameMs,
    };
    result.cSeesA = cA.r;
    result.cSeesB = cB.r;
    console.log(`C: first frames after ${JSON.stringify(result.cFirstFrameMs)} ms, all video ${result.lateJoinMs} ms after publishing`);
    result.aSeesC = (await waitFor('A decoding C', sees(a, c, 0))).r;
    result.bSeesC = (await waitFor('B decoding C', sees(b, c, 0))).r;

    // B leaves (the Leave button, then the tab closes).
    await b.page.click('#leave');
    await waitFor('B idle', async () => {
      const st = await state(b.page);
      return { ok: !st.publishing, info: st };
    });
    await b.page.close();
    const leftAt = Date.now();
    for (const [name, p] of [['A', a], ['C', c]]) {
      await waitFor(`${name} dropping B`, async () => {
        const st = await state(p.page);
        return { ok: !remoteOf(st, b.id), info: st.remotes.map((r) => r.id) };
      }, 5000);
    }
    result.leaveMs = Date.now() - leftAt;
    const finalA = await state(a.page);
    const finalC = await state(c.page);
    result.finalRemotes = {
      A: finalA.remotes.map((r) => r.id),
      C: finalC.remotes.map((r) => r.id),
    };
    console.log(`B gone from A and C after ${result.leaveMs} ms`);
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack || e);
    for (const [name, p] of Object.entries(pages)) {
      if (!p.page.isClosed()) {
        result[`state${name}`] = await state(p.page).catch(() => null);
      }
    }
  }
  await finish(browser, result);
}

run(main);
