#!/usr/bin/env bash
# Every benchmark of the project in one command; writes BENCHMARKS.md (and bench-results.json).
#   bench/run.sh [--runs N] [any other sporeprint-bench option]
# Takes about 10 minutes on a 2-core machine once built. Uses the real photos for int8 calibration and the
# training bench when SPOREPRINT_DATA (or ../shared/data/mushrooms215) is there.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
if [ -z "${SPOREPRINT_DATA:-}" ] && [ -d ../shared/data/mushrooms215/images ]; then
  export SPOREPRINT_DATA="$(cd ../shared/data/mushrooms215 && pwd)"
fi
photos=${SPOREPRINT_DATA:+$SPOREPRINT_DATA/images}

echo "== building (release)"
cargo build --release --locked -p sporeprint-bench -p sporeprint-device
cargo build --release --locked -p sporeprint-host --example bench_models

# The networks that are not shipped, written by the exporter's own code (host/examples/bench_models.rs).
MODELS=.cache/bench
for backbone in efficientnet-lite0 resnet50; do
  if [ ! -s "$MODELS/$backbone/embedder.int8-per-tensor.onnx" ]; then
    echo "== exporting $backbone (fp32, int8 per-channel, int8 per-tensor) to $MODELS/$backbone"
    ./target/release/examples/bench_models "$backbone" "$MODELS/$backbone" $photos
  fi
done

echo "== training throughput (tch vs PyTorch)"
SPOREPRINT_BENCH_JSON="$PWD/$MODELS/training.json" cargo bench --locked -p sporeprint-host --bench train_throughput

echo "== inference, search, memory"
./target/release/sporeprint-bench \
  --model "efficientnet-lite0:fp32=models/default/embedder.onnx" \
  --model "efficientnet-lite0:int8=models/default/embedder.int8.onnx" \
  --model "efficientnet-lite0:int8 per-tensor=$MODELS/efficientnet-lite0/embedder.int8-per-tensor.onnx" \
  --model "resnet50:fp32=$MODELS/resnet50/embedder.onnx" \
  --model "resnet50:int8=$MODELS/resnet50/embedder.int8.onnx" \
  --model "resnet50:int8 per-tensor=$MODELS/resnet50/embedder.int8-per-tensor.onnx" \
  --training "$MODELS/training.json" \
  --json bench-results.json \
  "$@"
