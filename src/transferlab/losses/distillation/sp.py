"""SP: Tung & Mori (ICCV 2019), similarity-preserving knowledge distillation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, LayerPairLoss


def similarity(feature_map: torch.Tensor) -> torch.Tensor:
    """G = row-normalised Q·Qᵀ, Q the (N, C·H·W) flattened map: the batch's (N, N) similarities."""
    flat = feature_map.flatten(1)
    return F.normalize(flat @ flat.T, dim=1)


class SimilarityPreserving(LayerPairLoss):
    """L_SP = Σ_j ‖G_j^t − G_j^s‖²_F / N², G = ``similarity`` of the batch's activations at layer j
    (student ``layers``, teacher ``reference_layers``): the student keeps which images the teacher
    finds alike. Shapes: maps (N, …), any widths; returns a 0-d tensor. As RepDistiller's
    ``Similarity`` on the last stage (its β = 3000 for CIFAR-100)."""

    def __init__(
        self,
        layers: Sequence[str] = ("5",),
        reference_layers: Sequence[str] | None = None,
        lam: float = 3000.0,
    ) -> None:
        super().__init__(layers, reference_layers, lam)

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        total = torch.zeros((), device=inputs.labels.device)
        for s, t in self.pairs(inputs):
            g_s, g_t = similarity(s), similarity(t)
            n = g_s.shape[0]
            total = total + (g_t - g_s).pow(2).sum() / (n * n)
        return total
