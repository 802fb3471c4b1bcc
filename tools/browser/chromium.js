// Shared launcher for Debian's headless Chromium (see docs/browser-tests.md).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const EXECUTABLE = process.env.CHROMIUM || '/usr/bin/chromium';

// `executable` overrides the Chromium binary (e.g. a wrapper that starts it in another
// network namespace); default: $CHROMIUM or /usr/bin/chromium. `secureOrigin`: an
// http origin other than localhost to treat as secure (getUserMedia needs one).
async function launch({ executable = EXECUTABLE, secureOrigin = null } = {}) {
  if (!fs.existsSync(executable)) {
    throw new Error(`Chromium not found at ${executable} (apt-get install chromium)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rtc-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: executable,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage', '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
      ...(secureOrigin ? [`--unsafely-treat-insecure-origin-as-secure=${secureOrigin}`] : []),
    ],
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

module.exports = { launch };
