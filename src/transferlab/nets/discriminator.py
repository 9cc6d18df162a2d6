"""The domain discriminator: an MLP on ``features()`` that tells source from target."""

from __future__ import annotations

from torch import nn


def domain_discriminator(
    feature_dim: int, hidden: int = 1024, layers: int = 2, dropout: float = 0.5
) -> nn.Sequential:
    """``layers`` hidden layers of ``hidden`` units (ReLU, dropout), then one logit: target vs source."""
    modules: list[nn.Module] = []
    width = feature_dim
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = hidden
    modules.append(nn.Linear(width, 1))
    return nn.Sequential(*modules)
