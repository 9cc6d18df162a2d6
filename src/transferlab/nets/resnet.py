"""CIFAR ResNets: the 3-stage family (resnet20, resnet8x4, resnet32x4) and the 4-stage ResNet-18.

The 3-stage nets follow He et al. (2016, section 4.2) with depth 6n+2; the "x4" variants widen
every stage four times, as in the distillation literature (CRD, Tian et al. 2020). ResNet-18 is
the ImageNet layout with a 3x3 stem and no max-pool, the usual CIFAR adaptation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.nets.base import Classifier


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride)]
    layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _resnet(
    stem: int,
    widths: list[int],
    blocks: int,
    num_classes: int,
    in_channels: int,
    zero_init_residual: bool = False,
    bn_momentum: float = 0.1,
) -> Classifier:
    stride_of = [1] + [2] * (len(widths) - 1)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False),
        nn.BatchNorm2d(stem),
        nn.ReLU(inplace=True),
    ]
    in_planes = stem
    for width, stride in zip(widths, stride_of, strict=True):
        layers.append(_stage(in_planes, width, blocks, stride))
        in_planes = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    backbone = nn.Sequential(*layers)
    for module in backbone.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = bn_momentum
        if zero_init_residual and isinstance(module, BasicBlock):
            nn.init.zeros_(module.bn2.weight)  # each block starts as the identity (Goyal et al. 2017)
    return Classifier(backbone, feature_dim=in_planes, num_classes=num_classes)


def cifar_resnet(
    depth: int,
    num_classes: int,
    width: int = 1,
    in_channels: int = 3,
    zero_init_residual: bool = False,
    bn_momentum: float = 0.1,
) -> Classifier:
    """3-stage CIFAR ResNet of depth 6n+2; widths (16, 32, 64) * width, stem 16 * width.

    ``zero_init_residual``: every residual block's last BatchNorm scale starts at 0, so each block
    starts as the identity (what keeps a fast, high-learning-rate start from blowing up).
    ``bn_momentum``: PyTorch's BatchNorm momentum (the weight of each batch in the running
    statistics; 0.1 by default, higher for runs of few steps)."""
    if (depth - 2) % 6:
        raise ValueError(f"cifar_resnet: depth={depth} must be 6n+2 (8, 20, 32, 56, ...)")
    blocks = (depth - 2) // 6
    stem = 16 if width == 1 else 32 if width == 4 else 16 * width
    widths = [16 * width, 32 * width, 64 * width]
    return _resnet(stem, widths, blocks, num_classes, in_channels, zero_init_residual, bn_momentum)


def resnet8(num_classes: int, in_channels: int = 3) -> Classifier:
    """The smallest of the family (78 K parameters): a student for distillation."""
    return cifar_resnet(8, num_classes, 1, in_channels)


def resnet20(num_classes: int, in_channels: int = 3) -> Classifier:
    return cifar_resnet(20, num_classes, 1, in_channels)


def resnet8x4(num_classes: int, in_channels: int = 3) -> Classifier:
    return cifar_resnet(8, num_classes, 4, in_channels)


def resnet32x4(num_classes: int, in_channels: int = 3) -> Classifier:
    return cifar_resnet(32, num_classes, 4, in_channels)


def resnet18(
    num_classes: int,
    in_channels: int = 3,
    width: int = 64,
    zero_init_residual: bool = False,
    bn_momentum: float = 0.1,
) -> Classifier:
    """ResNet-18 for 32x32 inputs: 3x3 stem, four stages of two blocks (``width`` × 1, 2, 4, 8
    channels: 64, 128, 256, 512). ``zero_init_residual``, ``bn_momentum``: see ``cifar_resnet``."""
    widths = [width, 2 * width, 4 * width, 8 * width]
    return _resnet(width, widths, 2, num_classes, in_channels, zero_init_residual, bn_momentum)
