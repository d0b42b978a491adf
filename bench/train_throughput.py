"""PyTorch reference for host/benches/train_throughput.rs: the same network (EfficientNet-Lite0
with TF-SAME padding + the 3-layer embedding head), the same batch-hard triplet loss and Adam,
on a preloaded random batch. Prints one line: `pytorch_images_per_second <value>`.

usage: train_throughput.py BATCH STEPS
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


def same_pad(x, kernel, stride):
    def axis(size):
        out = (size + stride - 1) // stride
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2
    top, bottom = axis(x.shape[2])
    left, right = axis(x.shape[3])
    return F.pad(x, (left, right, top, bottom))


class ConvBn(nn.Module):
    def __init__(self, cin, cout, kernel, stride, groups=1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x):
        return self.bn(self.conv(same_pad(x, self.kernel, self.stride)))


class MbConv(nn.Module):
    def __init__(self, expand, kernel, stride, cin, cout):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBn(cin, hidden, 1, 1) if expand != 1 else None
        self.depthwise = ConvBn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBn(hidden, cout, 1, 1)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self.expand(x)) if self.expand is not None else x
        out = self.project(F.relu6(self.depthwise(h)))
        return out + x if self.skip else out


class Net(nn.Module):
    def __init__(self, dim=128):
        super().__init__()
        self.stem = ConvBn(3, 32, 3, 2)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MbConv(expand, kernel, stride if i == 0 else 1, cin, cout))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvBn(320, 1280, 1, 1)
        self.fc = nn.Sequential(nn.Linear(1280, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, dim))

    def forward(self, x):
        x = self.blocks(F.relu6(self.stem(x)))
        x = F.relu6(self.head_conv(x)).mean(dim=(2, 3))
        return F.normalize(self.fc(x), dim=1)


def batch_hard(emb, labels, margin=0.5):
    d = torch.cdist(emb, emb).clamp_min(1e-6)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    pos = same & ~eye
    hp = (d * pos).amax(1)
    hn = (d + (~(~same)).float() * (d.max().detach() + 1)).amin(1)
    return F.relu(hp - hn + margin).mean()


def main(batch, steps):
    torch.manual_seed(0)
    net = Net().train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, 224, 224)
    labels = torch.arange(batch) // 4

    def step():
        optimizer.zero_grad()
        batch_hard(net(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - started
    print(f"pytorch_images_per_second {batch * steps / elapsed:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
