"""The test-time adaptation slot: a member says whether BatchNorm normalises with each test
batch's own statistics, which parameters it adapts and the objective it lowers on the batch's
logits; ``TestTimeModule`` (``methods/tta.py``) owns the stream, the optimiser, the steps per
batch and the episodic reset."""

from __future__ import annotations

import torch
from torch import nn


def batchnorm_layers(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def normalise_with_batch_statistics(net: nn.Module) -> None:
    """Every BatchNorm layer of ``net`` normalises with the statistics of the batch it sees, in
    train and eval mode alike (no running statistics kept)."""
    for layer in batchnorm_layers(net):
        layer.track_running_stats = False
        layer.running_mean = None
        layer.running_var = None


class TestTimeAdaptation(nn.Module):
    """Base of a test-time adaptation (and the member ``none``: the source model as it is).

    ``name``: how runs record it (``metrics.json``: ``tta.adaptation``);
    ``batch_statistics``: BatchNorm normalises with each test batch's statistics;
    ``needs_batchnorm``: refuse a net without BatchNorm layers;
    ``adapted_parameters(net)``: what the optimiser steps (with an objective);
    ``objective(logits)``: the loss lowered on each batch, (N, K) -> a scalar; None trains nothing.
    """

    __test__ = False  # not a pytest class

    name = "none"
    batch_statistics = False
    needs_batchnorm = False

    def adapted_parameters(self, net: nn.Module) -> list[nn.Parameter]:
        return []

    def objective(self, logits: torch.Tensor) -> torch.Tensor | None:
        return None

    @property
    def trains(self) -> bool:
        """Whether it steps an optimiser (it has an objective)."""
        return type(self).objective is not TestTimeAdaptation.objective
