#!/usr/bin/env bash
# The whole test suite: unit, property, integration and browser-interop tests.
# Installs what it needs on a fresh Debian machine: Chromium (for the interop tests),
# the Node package that drives it, and ffmpeg (plain RTP tests, engine/tests/plain.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  echo "== installing ffmpeg (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
fi
# The ICE-TCP browser test (tools/tests/demo_browser_tcp.rs) runs Chromium in a network
# namespace with an nftables rule: unshare (util-linux), ip (iproute2), nft (nftables);
# tools/tests/cascade.rs runs two engines in a namespace it makes (unshare -n, ip);
# tools/tests/demo_browser_constrained.rs shapes a veth with tc and starts Chromium in
# a second namespace with nsenter.
if ! command -v nft >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 \
  || ! command -v unshare >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1 \
  || ! command -v tc >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables iproute2 util-linux >/dev/null
fi
(cd tools/browser && npm ci --no-audit --no-fund --loglevel=error)

# Integration tests and benches/tests/smoke.rs run other packages' binaries (rtc-engine,
# rtc-loadgen); cargo only builds a package's own binaries for its tests, so build them all.
cargo build --workspace --bins
cargo test --workspace --all-targets
cargo test --workspace --doc
