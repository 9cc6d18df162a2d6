"""SHOT-IM (Liang et al., ICML 2020), online."""

from __future__ import annotations

import torch
from torch import nn

from transferlab.losses.tta import InformationMaximizationLoss
from transferlab.tta.base import TestTimeAdaptation


class ShotIM(TestTimeAdaptation):
    """Information maximisation (confident and diverse predictions) over the whole feature
    extractor, the classifier head (the source hypothesis) frozen; batch statistics as TENT; one
    step per batch, online."""

    name = "shot_im"
    batch_statistics = True

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.loss = InformationMaximizationLoss(epsilon)

    def adapted_parameters(self, net: nn.Module) -> list[nn.Parameter]:
        return list(net.backbone.parameters())

    def objective(self, logits: torch.Tensor) -> torch.Tensor:
        return self.loss(logits)
