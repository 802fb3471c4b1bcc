// Waiting helpers shared by the browser drivers.
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

module.exports = { sleep, makeWaitFor };
