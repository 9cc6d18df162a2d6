"""The LeNet of the CDAN paper's digits experiments (thuml/CDAN, ``pytorch/network.py``)."""

from __future__ import annotations

from torch import nn

from transferlab.nets.base import Classifier


def lenet(num_classes: int, in_channels: int = 3, input_size: int = 28, dropout: float = 0.5) -> Classifier:
    """conv 5×5 (20) → max-pool 2 → ReLU → conv 5×5 (50) → Dropout2d → max-pool 2 → ReLU → fc 500 →
    ReLU → Dropout, then a linear head; ``features`` is the 500-d fc activation.

    At 28 px the second stage's maps are 4×4, as in the authors' code. They read the digits as one
    grey channel; the ImageFolder copies here are read as RGB (``in_channels=3``, three equal
    channels), which the first convolution sums.
    """
    if input_size < 16 or (input_size - 4) % 2 or ((input_size - 4) // 2 - 4) % 2:
        raise ValueError(
            f"lenet: input_size={input_size} must leave whole maps after two conv+pool stages (e.g. 28)"
        )
    spatial = ((input_size - 4) // 2 - 4) // 2
    backbone = nn.Sequential(
        nn.Conv2d(in_channels, 20, 5),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(20, 50, 5),
        nn.Dropout2d(dropout),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(50 * spatial * spatial, 500),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
    )
    return Classifier(backbone, feature_dim=500, num_classes=num_classes)
