"""Wide ResNets (Zagoruyko & Komodakis, 2016): WRN-d-k, depth d = 6n+4, widen factor k."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.nets.base import Classifier


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        residual = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = F.relu(self.bn2(out))
        out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + residual


def wide_resnet(
    depth: int, widen_factor: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
) -> Classifier:
    if (depth - 4) % 6:
        raise ValueError(f"wide_resnet: depth={depth} must be 6n+4 (16, 28, 40, ...)")
    blocks = (depth - 4) // 6
    widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
    in_planes = widths[0]
    for width, stride in zip(widths[1:], [1, 2, 2], strict=True):
        for i in range(blocks):
            layers.append(PreActBlock(in_planes, width, stride if i == 0 else 1, dropout))
            in_planes = width
    layers += [
        nn.BatchNorm2d(in_planes),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    return Classifier(nn.Sequential(*layers), feature_dim=in_planes, num_classes=num_classes)


def wrn_16_2(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> Classifier:
    return wide_resnet(16, 2, num_classes, in_channels, dropout)


def wrn_40_2(num_classes: int, in_channels: int = 3, dropout: float = 0.0) -> Classifier:
    return wide_resnet(40, 2, num_classes, in_channels, dropout)
