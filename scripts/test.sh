#!/usr/bin/env bash
# Sets everything up and runs every test of the workspace (the README's test command).
# Tests that need the real photos read SPOREPRINT_DATA; it defaults to the data set next to the
# repository when present, and those tests skip cleanly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

if [ -z "${SPOREPRINT_DATA:-}" ] && [ -d ../shared/data/mushrooms215/images ]; then
  export SPOREPRINT_DATA="$(cd ../shared/data/mushrooms215 && pwd)"
fi
echo "SPOREPRINT_DATA=${SPOREPRINT_DATA:-<unset: real-data tests skip>}"

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== the shared core builds without std"
cargo build -p sporeprint-shared --no-default-features --target thumbv7em-none-eabihf --locked

echo "== tests"
cargo test --workspace --locked
