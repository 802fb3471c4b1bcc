#!/usr/bin/env bash
# Instructions per forwarded packet of the engine's forwarding path, counted by
# valgrind's callgrind (deterministic where timing is not on this VM): one publisher
# packet -> LEGS subscriber legs -> send batches, see benches/examples/icount_forward.rs.
#
#   scripts/icount-forward.sh [PACKETS] [LEGS] [RUNS]    (default 200 50 1)
#
# ICOUNT_REMOTE_LEGS=N runs two shards with the last N legs on shard 1 (each packet also
# handed to shard 1 and forwarded there; `Shard::on_data` is collected too).
# ICOUNT_BIN=path runs that (already built) binary instead of building the example, e.g.
# a copy built from another commit for a before/after comparison. ICOUNT_TOP=N prints the
# N biggest inclusive costs of each run (of its first part). ICOUNT_KEEP=dir keeps each
# run's callgrind outputs there (dir/cg.RUN.PART, for callgrind_annotate).
#
# Needs valgrind (Debian package `valgrind`; installed here when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${1:-200}
LEGS=${2:-50}
RUNS=${3:-1}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v valgrind >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

BIN=${ICOUNT_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release -q -p benches --example icount_forward
  BIN=target/release/examples/icount_forward
fi
out=$(mktemp -d)
min=0
trap 'rm -rf "$out"' EXIT
for run in $(seq 1 "$RUNS"); do
  f="$out/cg.$run"
  ICOUNT_CALLGRIND_CONTROL=1 valgrind --tool=callgrind --callgrind-out-file="$f" \
    --toggle-collect='*<impl engine::shard::Shard>::on_datagram' \
    --toggle-collect='*<impl engine::shard::Shard>::drain_touched' \
    --toggle-collect='*as engine::io::IoBackend>::flush*' \
    --toggle-collect='*<impl engine::shard::Shard>::on_data' \
    "$BIN" "$PACKETS" "$LEGS" 2>"$out/vg.$run" >"$out/stdout.$run" \
    || { cat "$out/vg.$run" "$out/stdout.$run" >&2; exit 1; }
  fwd=$(sed -n 's/^forwarded \([0-9]*\) leg packets.*/\1/p' "$out/stdout.$run")
  # The measured window is the dumps the program asked for (`$f.1`, `$f.2`, ...: it is
  # split where the program refreshes the clients' ICE consent); `$f` holds the rest
  # (shutdown).
  total=0
  for part in "$f".[0-9]*; do
    t=$(callgrind_annotate "$part" | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
    total=$((total + ${t:-0}))
  done
  f="$f.1"
  echo "run $run: $total instructions / $fwd forwarded packets = $((total / fwd)) instructions per forwarded packet ($LEGS legs)"
  per=$((total / fwd))
  if [ -n "${ICOUNT_KEEP:-}" ]; then
    mkdir -p "$ICOUNT_KEEP"
    for part in "$out/cg.$run".[0-9]*; do cp "$part" "$ICOUNT_KEEP/"; done
  fi
  if [ "$min" = 0 ] || [ "$per" -lt "$min" ]; then min=$per; fi
  if [ "${ICOUNT_TOP:-0}" != 0 ]; then
    callgrind_annotate --inclusive=yes "$f" 2>/dev/null | grep -v '^--\|^$' | head -n "$ICOUNT_TOP" || true
  fi
done
# The engine's timers (sender reports, the allocator) add work to some runs; the
# fewest is the forwarding path's own cost.
echo "min over $RUNS run(s): $min instructions per forwarded packet ($LEGS legs)"
