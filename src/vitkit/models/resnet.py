"""The paper's hybrid stem (section 3.2): ResNet-50 with weight-standardized convs and GroupNorm (BiT style)."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from ..layers.patch_embed import check_image


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow 'SAME' padding (extra pixel on the bottom/right), as the original hybrid was trained."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class StdConv2d(nn.Conv2d):
    """Conv with weight standardization (zero mean, unit variance per output filter) and 'SAME' padding."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, eps: float = 1e-8) -> None:
        super().__init__(in_chans, out_chans, kernel_size, stride=stride, padding=0, bias=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        mean = w.mean(dim=(1, 2, 3), keepdim=True)
        var = w.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        w = (w - mean) / torch.sqrt(var + self.eps)
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, w, None, self.stride)


def group_norm(chans: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, chans, eps=1e-5)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with GroupNorm, projection shortcut when the shape changes, ReLU after the add."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        mid = out_chans // 4
        self.conv1, self.norm1 = StdConv2d(in_chans, mid, 1), group_norm(mid)
        self.conv2, self.norm2 = StdConv2d(mid, mid, 3, stride), group_norm(mid)
        self.conv3, self.norm3 = StdConv2d(mid, out_chans, 1), group_norm(out_chans)
        self.downsample = None
        if stride != 1 or in_chans != out_chans:
            self.downsample = nn.Sequential(StdConv2d(in_chans, out_chans, 1, stride), group_norm(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = F.relu(self.norm1(self.conv1(x)))
        x = F.relu(self.norm2(self.conv2(x)))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ResNetStem(nn.Module):
    """ResNet-50 trunk for the hybrid ViT; the paper uses stages (3, 4, 9): output stride 16, 1024 channels."""

    def __init__(self, in_chans: int = 3, layers: tuple[int, ...] = (3, 4, 9)) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.stride = 4 * 2 ** (len(layers) - 1)
        self.out_chans = 256 * 2 ** (len(layers) - 1)
        self.conv = StdConv2d(in_chans, 64, 7, stride=2)
        self.norm = group_norm(64)
        stages, chans = [], 64
        for index, num_blocks in enumerate(layers):
            out = 256 * 2 ** index
            blocks = [Bottleneck(chans if b == 0 else out, out, (1 if index == 0 else 2) if b == 0 else 1)
                      for b in range(num_blocks)]
            stages.append(nn.Sequential(*blocks))
            chans = out
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image(x, self.in_chans, self.stride, what="the hybrid ResNet stem")
        x = F.relu(self.norm(self.conv(x)))
        x = F.max_pool2d(pad_same(x, 3, 2, value=float("-inf")), kernel_size=3, stride=2)
        return self.stages(x)
