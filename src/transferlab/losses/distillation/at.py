"""AT: Zagoruyko & Komodakis (ICLR 2017), paying more attention to attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, LayerPairLoss


def attention_map(feature_map: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """a(F) = vec(mean_c F_c^p) / ‖vec(mean_c F_c^p)‖₂: (N, C, H, W) -> (N, H·W)."""
    return F.normalize(feature_map.pow(p).mean(1).flatten(1), dim=1)


class AttentionTransfer(LayerPairLoss):
    """L_AT = Σ_j mean_{n, i} (a(F_j^s)[n, i] − a(F_j^t)[n, i])², over the layers j in ``layers``
    (the student's) and ``reference_layers`` (the teacher's, the same names by default), with
    ``attention_map`` a(·) at power p = 2; a map is average-pooled to the other's side first when
    the two differ. Shapes: maps (N, C_s, H, W) and (N, C_t, H', W'); returns a 0-d tensor.

    As RepDistiller's ``Attention`` (the mean over the batch and the H·W positions, summed over
    layers; its β = 1000 for CIFAR-100). Layers: a CIFAR ResNet's three stages, ``['3','4','5']``.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("3", "4", "5"),
        reference_layers: Sequence[str] | None = None,
        p: float = 2.0,
        lam: float = 1000.0,
    ) -> None:
        super().__init__(layers, reference_layers, lam)
        self.p = p

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        total = torch.zeros((), device=inputs.labels.device)
        for s, t in self.pairs(inputs):
            if s.shape[2] > t.shape[2]:
                s = F.adaptive_avg_pool2d(s, t.shape[2:])
            elif s.shape[2] < t.shape[2]:
                t = F.adaptive_avg_pool2d(t, s.shape[2:])
            total = total + (attention_map(s, self.p) - attention_map(t, self.p)).pow(2).mean()
        return total
