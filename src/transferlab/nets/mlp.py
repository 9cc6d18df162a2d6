"""A multilayer perceptron on flattened images: Hinton et al.'s distillation student on MNIST."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from transferlab.nets.base import Classifier


def mlp(
    num_classes: int,
    in_channels: int = 1,
    input_size: int = 28,
    hidden: Sequence[int] = (1200, 1200),
    dropout: float = 0.0,
) -> Classifier:
    """Flatten (N, C, H, W) images, then ``Linear -> ReLU -> Dropout`` per hidden size, and a
    linear head. ``features`` is the last hidden layer's activation (N, hidden[-1]).

    Hinton, Vinyals & Dean (2015) distil into two hidden layers of 800 or 1200 units.
    """
    if not hidden:
        raise ValueError("mlp: hidden must list at least one layer size (e.g. net.hidden=[800,800])")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_channels * input_size * input_size
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = size
    return Classifier(nn.Sequential(*layers), feature_dim=width, num_classes=num_classes)
