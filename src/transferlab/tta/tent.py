"""TENT (Wang et al., ICLR 2021)."""

from __future__ import annotations

import torch
from torch import nn

from transferlab.losses.tta import EntropyMinimization
from transferlab.tta.base import TestTimeAdaptation, batchnorm_layers


class Tent(TestTimeAdaptation):
    """Batch statistics, and gradient steps on the mean prediction entropy of each test batch over
    the BatchNorm affine parameters (γ, β) only; the batch is predicted by the forward pass that
    computes the loss (before its step), as the authors' code."""

    name = "tent"
    batch_statistics = True
    needs_batchnorm = True

    def __init__(self) -> None:
        super().__init__()
        self.loss = EntropyMinimization()

    def adapted_parameters(self, net: nn.Module) -> list[nn.Parameter]:
        return [p for layer in batchnorm_layers(net) for p in (layer.weight, layer.bias) if p is not None]

    def objective(self, logits: torch.Tensor) -> torch.Tensor:
        return self.loss(logits)
