"""The contract every net follows: ``features(x) -> (N, D)`` and a linear ``head``."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """A backbone that maps images to feature vectors, and a linear head on top.

    Methods rely on this split: fine-tuning swaps ``head`` for the target classes, domain
    adaptation attaches a discriminator to ``features``, distillation may read them.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck: nn.Module = nn.Identity()  # add_bottleneck() puts a layer there
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, feature_dim) features."""
        return self.bottleneck(self.backbone(x).flatten(1))

    def add_bottleneck(self, dim: int) -> None:
        """A new layer between the backbone and the head, Linear(D, dim) + BatchNorm + ReLU, and a
        fresh head on it: the reference library's ``bottleneck_dim`` (256 on Office-31), so the
        features a discriminator or an alignment term reads are ``dim``-wide and trained from
        scratch, like the head, while the backbone keeps its pretrained weights."""
        device = self.head.weight.device
        layers = [nn.Linear(self.feature_dim, dim), nn.BatchNorm1d(dim), nn.ReLU()]
        self.bottleneck = nn.Sequential(*layers).to(device)
        self.feature_dim = dim
        self.reset_head(self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, num_classes) logits."""
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs."""
        device = self.head.weight.device
        self.head = nn.Linear(self.feature_dim, num_classes).to(device)
