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
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, feature_dim) features."""
        return self.backbone(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, num_classes) logits."""
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised one with ``num_classes`` outputs."""
        device = self.head.weight.device
        self.head = nn.Linear(self.feature_dim, num_classes).to(device)
