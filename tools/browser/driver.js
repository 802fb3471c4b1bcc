// Helpers shared by the browser drivers: waiting for page state and reporting the result.
'use strict';

// Resolves after `ms` milliseconds.
function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Returns `waitFor(what, fn, timeoutMs = stepTimeoutMs)`: it calls the async `fn` every
// `pollMs` until it returns `{ ok: true, ... }` (and returns that), or throws naming
// `what` and the last `info` once `timeoutMs` has passed.
function makeWaitFor(stepTimeoutMs, pollMs) {
  return async function waitFor(what, fn, timeoutMs = stepTimeoutMs) {
    const end = Date.now() + timeoutMs;
    let last;
    while (Date.now() < end) {
      last = await fn();
      if (last && last.ok) return last;
      await sleep(pollMs);
    }
    throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last && last.info)}`);
  };
}

// Prints the driver's one final `RESULT {json}` line, closes `browser` and exits: 0 when
// `result.ok`, else 1.
async function finish(browser, result) {
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close().catch(() => {});
  process.exit(result.ok ? 0 : 1);
}

// Runs the async `main`; anything it throws is reported as a failed RESULT (exit 1).
function run(main) {
  main().catch((e) => {
    console.log(`RESULT ${JSON.stringify({ ok: false, error: String(e && e.stack || e) })}`);
    process.exit(1);
  });
}

module.exports = { sleep, makeWaitFor, finish, run };
