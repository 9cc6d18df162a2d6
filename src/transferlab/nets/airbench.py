"""The net of the airbench94 CIFAR-10 speed record (Keller Jordan, 2024), as a ``Classifier``.

A 2×2 convolution whose filters whiten the training images' patches (set from the data before
training, never trained: ``initialize_from_data``), then three blocks of two 3×3 convolutions
(the first followed by 2×2 max-pooling), each convolution followed by BatchNorm (no learnt scale,
ε = 1e-12) and GELU, then a 3×3 max-pooling to one pixel. The features are scaled by 1/9 before
the linear head. Convolutions start as identities on their first input channels (Dirac). Built
for 32×32 inputs.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from transferlab.nets.base import Classifier


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3×3, same padding, no bias, the first ``in_channels`` filters the identity (Dirac)."""
    layer = nn.Conv2d(in_channels, out_channels, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(layer.weight[: min(in_channels, out_channels)])
    return layer


def norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    """BatchNorm whose scale stays 1 (only its shift is learnt)."""
    layer = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    layer.weight.requires_grad_(False)
    return layer


def block(in_channels: int, out_channels: int, momentum: float) -> nn.Sequential:
    return nn.Sequential(
        conv(in_channels, out_channels),
        nn.MaxPool2d(2),
        norm(out_channels, momentum),
        nn.GELU(),
        conv(out_channels, out_channels),
        norm(out_channels, momentum),
        nn.GELU(),
    )


class WhiteningConv(nn.Conv2d):
    """A k×k convolution with 2·C·k² filters: the eigenvectors of the training patches'
    covariance, each scaled by 1/sqrt(eigenvalue + ε), and their negatives (so GELU keeps both
    signs). Its weights are set by ``initialize_from_data`` and never trained; its bias is."""

    def __init__(self, in_channels: int, kernel_size: int, eps: float = 5e-4) -> None:
        super().__init__(in_channels, 2 * in_channels * kernel_size**2, kernel_size, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor) -> None:
        """``images``: (N, C, H, W) normalised training images (un-augmented)."""
        c, (h, w) = images.shape[1], self.kernel_size
        patches = images.float().unfold(2, h, 1).unfold(3, w, 1)  # (N, C, H', W', h, w)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * h * w).double()
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]
        filters = filters.flip(0).reshape(-1, c, h, w)  # largest eigenvalue first
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight.dtype))


class AirbenchNet(Classifier):
    """See the module docstring. ``widths``: the three blocks' channels."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        widths: tuple[int, int, int] = (64, 256, 256),
        bn_momentum: float = 0.4,
        whiten_kernel: int = 2,
        scale: float = 1 / 9,
    ) -> None:
        whiten = WhiteningConv(in_channels, whiten_kernel)
        channels = [whiten.out_channels, *widths]
        backbone = nn.Sequential(
            whiten,
            nn.GELU(),
            *(block(a, b, bn_momentum) for a, b in pairwise(channels)),
            nn.MaxPool2d(3),
            nn.Flatten(),
            Scale(scale),
        )
        super().__init__(backbone, feature_dim=widths[-1], num_classes=num_classes)

    def initialize_from_data(self, images: torch.Tensor) -> None:
        """Set the whitening filters from training images (called once, before training)."""
        self.backbone[0].initialize_from_data(images)


def airbench(
    num_classes: int,
    in_channels: int = 3,
    widths: tuple[int, int, int] = (64, 256, 256),
    bn_momentum: float = 0.4,
    whiten_kernel: int = 2,
    scale: float = 1 / 9,
) -> AirbenchNet:
    """The airbench94 net (``AirbenchNet``)."""
    return AirbenchNet(num_classes, in_channels, tuple(widths), bn_momentum, whiten_kernel, scale)
