#!/usr/bin/env bash
# Every browser test file N times in a row (default 10) while LOAD busy loops (default 2)
# keep the CPUs loaded: the check for "no browser test is flaky under CPU load".
# Prints one line per file (passed/N and seconds) and, for each failed run, its panic.
#
#   scripts/browser-under-load.sh [N] [LOAD]
#
# ONLY="cascade demo_browser_constrained" runs just those files; KEEP_LOGS=DIR keeps every
# run's output there (a failed run's engine view, `DemoStack::explain_rooms`, is in it).
#
# Needs what scripts/test-all.sh installs (Chromium, tools/browser/node_modules, ffmpeg,
# nftables/iproute2 for the TCP test); builds the binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
LOAD=${2:-2}
TESTS=(
  "rtc-core chromium_connect"
  "tools browser_red_dtls"
  "tools demo_browser"
  "tools demo_browser_ice_restart"
  "tools demo_browser_simulcast"
  "tools demo_browser_constrained"
  "tools demo_browser_tcp"
  "tools plain_browser"
  "tools cascade"
)
if [ -n "${ONLY:-}" ]; then
  picked=()
  for t in "${TESTS[@]}"; do
    read -r _ name <<<"$t"
    for o in $ONLY; do [ "$o" = "$name" ] && picked+=("$t"); done
  done
  [ ${#picked[@]} -gt 0 ] || { echo "ONLY names no test file: $ONLY" >&2; exit 2; }
  TESTS=("${picked[@]}")
fi
cargo build -q --workspace --bins
for t in "${TESTS[@]}"; do
  read -r pkg name <<<"$t"
  cargo test -q -p "$pkg" --test "$name" --no-run 2>/dev/null
done
logs=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -a "$logs"/. "$KEEP_LOGS"/; fi
  rm -rf "$logs"
}
trap cleanup EXIT
for _ in $(seq 1 "$LOAD"); do
  sh -c 'while :; do :; done' &
  pids+=($!)
done
failed=0
for t in "${TESTS[@]}"; do
  read -r pkg name <<<"$t"
  pass=0
  t0=$SECONDS
  for i in $(seq 1 "$RUNS"); do
    if cargo test -q -p "$pkg" --test "$name" >"$logs/$name.$i" 2>&1; then
      pass=$((pass + 1))
    else
      failed=1
      echo "  $name run $i FAILED: $(grep -m2 -E 'panicked|assertion' "$logs/$name.$i" | tr '\n' ' ' | cut -c1-400)"
    fi
  done
  echo "$name: $pass/$RUNS passed ($((SECONDS - t0)) s)"
done
exit "$failed"
