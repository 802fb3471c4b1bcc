#!/usr/bin/env bash
# Short, bounded run of every cargo-fuzz target (CI smoke). For real fuzzing run a
# target for longer, e.g.:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run rtp -- -max_total_time=600
# (stable toolchain: cargo-fuzz needs -Z flags, hence RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${FUZZ_RUNS:-20000}"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
targets=$(cargo fuzz list)
cargo fuzz build -O
for t in $targets; do
  echo "== fuzz $t ($RUNS runs)"
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  cargo fuzz run -O "$t" "$corpus" "${seeds[@]}" -- -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" -max_len=4096 2>&1 | tail -n 3
done
echo "fuzz smoke: $(echo "$targets" | wc -w) targets, up to $RUNS runs or ${SECONDS_PER_TARGET}s each, no crash"
