#!/usr/bin/env bash
# The whole test suite: unit, property, integration and browser-interop tests.
# Installs what it needs on a fresh machine (Debian chromium for the interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets
cargo test --workspace --doc
