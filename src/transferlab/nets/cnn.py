"""The article's CNN: conv 64 -> conv 128 -> fc 1024 -> classes."""

from __future__ import annotations

from torch import nn

from transferlab.nets.base import Classifier


def cnn(num_classes: int, in_channels: int = 3, input_size: int = 32, dropout: float = 0.5) -> Classifier:
    """Two 5x5 conv + max-pool stages (64 and 128 channels), a 1024-unit fc layer, a linear head.

    ``features`` is the 1024-d fc activation, so the head is the only class-specific layer.
    """
    if input_size % 4:
        raise ValueError(f"cnn: input_size={input_size} must be a multiple of 4 (two 2x2 poolings)")
    spatial = input_size // 4
    backbone = nn.Sequential(
        nn.Conv2d(in_channels, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * spatial * spatial, 1024),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    return Classifier(backbone, feature_dim=1024, num_classes=num_classes)
