"""PKT: Passalis & Tefas (ECCV 2018), probabilistic knowledge transfer."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURES


def conditional_probabilities(features: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """P[i, j] = k(i, j) / Σ_j' k(i, j'), k(i, j) = (1 + cos(f_i, f_j)) / 2: (N, D) -> (N, N)."""
    unit = F.normalize(features, dim=1, eps=eps)
    kernel = (unit @ unit.T + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


class ProbabilisticKnowledgeTransfer(DistillationLoss):
    """L_PKT = mean_{i, j} P^t[i, j]·log((P^t[i, j] + ε) / (P^s[i, j] + ε)), P the
    ``conditional_probabilities`` of the batch's pooled features (cosine kernel): the student
    matches the teacher's distribution of similarities, any widths. Shapes: (N, D_s), (N, D_t);
    returns a 0-d tensor. As RepDistiller's ``PKT`` (a mean over N² entries, hence its β = 30000)."""

    needs = frozenset({FEATURES})

    def __init__(self, lam: float = 30000.0, eps: float = 1e-7) -> None:
        super().__init__(lam)
        self.eps = eps

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        p_s = conditional_probabilities(inputs.student_features, self.eps)
        p_t = conditional_probabilities(inputs.teacher_features.detach(), self.eps)
        return (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()
