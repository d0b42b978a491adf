#!/usr/bin/env bash
# Sets everything up and runs every test of the workspace (the README's test command).
# Tests that need the real photos read SPOREPRINT_DATA; it defaults to the data set next to the
# repository when present, and those tests skip cleanly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's header says how long the script has run, so a slow CI log shows where time went.
stage() { printf '== %s (at %dm%02ds)\n' "$1" $((SECONDS / 60)) $((SECONDS % 60)); }

./scripts/setup.sh

if [ -z "${SPOREPRINT_DATA:-}" ] && [ -d ../shared/data/mushrooms215/images ]; then
  export SPOREPRINT_DATA="$(cd ../shared/data/mushrooms215 && pwd)"
fi
echo "SPOREPRINT_DATA=${SPOREPRINT_DATA:-<unset: real-data tests skip>}"

stage "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

stage "the shared core builds without std"
cargo build -p sporeprint-shared --no-default-features --target thumbv7em-none-eabihf --locked

stage "tests"
cargo test --workspace --locked --no-fail-fast

stage "the table tools build without libtorch or tract"
# Built on their own (their own feature selection, not the workspace's), with a LIBTORCH that
# does not exist (.cargo/config.toml's default does not override a set variable): torch-sys
# anywhere in the build would fail here. After the tests, in the same target directory, so the
# dependencies they share with the tests' build are compiled once.
if cargo tree -p sporeprint-tables -e normal,build --locked | grep -E "torch|tract"; then
  echo "sporeprint-tables depends on the above: it must build without libtorch and tract" >&2
  exit 1
fi
LIBTORCH=/nonexistent/libtorch cargo build -p sporeprint-tables --locked

# The Pi's CPU: the device binary cross-built for aarch64, and the tests of the shared core
# (including the default embedder's parity with its x86 reference) and of the device library
# run under qemu. The device's end-to-end tests spawn its binary, which qemu's runner cannot
# wrap without binfmt_misc, so they run natively above.
stage "Raspberry Pi (aarch64, under qemu)"
PI=aarch64-unknown-linux-gnu
# One package and feature selection for every step, so tract (most of the build) compiles once
# for the Pi: building the tests also builds the device's binary, which the package check uses.
PI_CRATES=(-p sporeprint-shared -p sporeprint-device --features sporeprint-shared/tract --target "$PI" --locked)
cargo test "${PI_CRATES[@]}" --no-run --lib --tests 2> >(grep -v "^ *Executable" >&2)
cargo test "${PI_CRATES[@]}" \
  --lib --test format --test image_io --test lock --test neighbours --test properties --test table --test embedder_parity \
  --test merge --test frames --test sync_pty --test fuzz_regressions --test hostile_corpus --test verdict --test find --test ops

stage "Debian package for the Pi (dpkg -x layout check)"
./scripts/check-deb.sh dev

stage "done"
