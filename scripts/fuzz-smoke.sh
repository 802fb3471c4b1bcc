#!/usr/bin/env bash
# Short, bounded run of every cargo-fuzz target from its seed corpus (CI smoke).
#
# Built optimised with debug assertions (`-O -a`); rustc ties overflow checks to debug
# assertions unless a profile sets them apart, so arithmetic overflow panics too. Each
# target starts from fuzz/seeds/<target>/ (kept in the repo) plus fuzz/corpus/<target>/
# (local, grows between runs) and stops after FUZZ_RUNS runs or FUZZ_SECONDS seconds.
# Budget: measured 4m37s on 2 busy cores from a warm fuzz/target (defaults 200000 runs,
# 30 s); the slow targets (connected Rtc, JSEP, SCTP, SDP, TCP framing) use up their
# seconds, the parsers finish their runs in a few. Hard bound: targets x FUZZ_SECONDS
# (20 x 25 s = 8.3 min) plus the build. Targets are every [[bin]] of fuzz/Cargo.toml
# (`cargo fuzz list`), e.g. ice_fragment for the WHIP/WHEP PATCH bodies.
#
# For real fuzzing run one target for longer, e.g.:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a rtp fuzz/corpus/rtp fuzz/seeds/rtp -- -max_total_time=600
# (stable toolchain: cargo-fuzz needs -Z flags, hence RUSTC_BOOTSTRAP=1.)
# A crash input lands in fuzz/artifacts/<target>/; turn it into a unit test in the
# crate it hit, and keep it as a seed. No -max_len: libFuzzer then uses at least 4096
# and the largest seed (the browser SDPs are ~8 KB).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${FUZZ_RUNS:-200000}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-25}"
FLAGS=(-O -a)
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
start=$SECONDS
targets=$(cargo fuzz list)
cargo fuzz build "${FLAGS[@]}"
echo "fuzz smoke: built in $((SECONDS - start))s"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in $targets; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  if [ -d "fuzz/seeds/$t" ]; then
    seeds=("fuzz/seeds/$t")
  else
    echo "fuzz smoke: target $t has no seed corpus in fuzz/seeds/$t" >&2
    exit 1
  fi
  t0=$SECONDS
  if ! cargo fuzz run "${FLAGS[@]}" "$t" "$corpus" "${seeds[@]}" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz smoke: $t FAILED (input in fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  echo "== $t: $(grep -o '^Done [0-9]* runs in [0-9]* second(s)' "$log" || tail -n 1 "$log") ($((SECONDS - t0))s)"
done
echo "fuzz smoke: $(echo "$targets" | wc -w) targets, up to $RUNS runs or ${SECONDS_PER_TARGET}s each, no crash, $((SECONDS - start))s in all"
