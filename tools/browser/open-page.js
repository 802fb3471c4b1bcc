// Opens one page in headless Chromium and keeps it open until the page's
// `window.rtcDone` becomes true, the time limit passes, or the process is killed.
// Usage: node open-page.js URL [seconds]
// Prints the page's `window.rtcState` whenever it changes (one line each) and exits
// non-zero if the browser cannot start or the page never loads.
'use strict';
const { launch } = require('./chromium.js');

async function main() {
  const url = process.argv[2];
  const seconds = Number(process.argv[3] || 60);
  if (!url) throw new Error('usage: node open-page.js URL [seconds]');
  const browser = await launch();
  let closing = false;
  const close = async () => {
    if (closing) return;
    closing = true;
    await browser.close().catch(() => {});
    process.exit(0);
  };
  process.on('SIGTERM', close);
  process.on('SIGINT', close);
  const page = await browser.context.newPage();
  page.on('console', (m) => console.log(`[page ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  await page.goto(url, { timeout: 15000 });
  const end = Date.now() + seconds * 1000;
  let last = '';
  while (Date.now() < end) {
    const st = await page.evaluate(() => [String(window.rtcState || ''), !!window.rtcDone]).catch(() => ['', false]);
    if (st[0] !== last) {
      last = st[0];
      console.log(`state: ${last}`);
    }
    if (st[1]) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  await close();
}

main().catch((e) => {
  console.error(`open-page: ${e && e.stack || e}`);
  process.exit(1);
});
