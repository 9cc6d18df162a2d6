"""Minimum Class Confusion."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.alignment.common import entropy


class MinimumClassConfusion(nn.Module):
    """MCC (Jin et al., ECCV 2020): the confusion between classes in the target's predictions.

    With p = softmax(logits_t / T) (N, K) and per-sample weights w_n = N·(1 + exp(−H(p_n))) /
    Σ_m (1 + exp(−H(p_m))) (detached: confident samples weigh more), the class confusion matrix is
    C = pᵀ·diag(w)·p (K, K), row-normalised C̃_jk = C_jk / Σ_k' C_jk', and

        L_MCC = (1/K)·Σ_j Σ_{k≠j} C̃_jk.

    Shapes: ``logits_t`` (N, K); returns a 0-d tensor, 0 when every prediction is one-hot.
    (The reference library divides C by its row sums with broadcasting over columns; C is
    symmetric, so the sum of the off-diagonal entries and the loss are the same.) Example::

        >>> MinimumClassConfusion(temperature=2.5)(torch.randn(8, 10))
    """

    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (MCC's is 2.5)")
        self.temperature = temperature

    def forward(self, logits_t: torch.Tensor) -> torch.Tensor:
        n, k = logits_t.shape
        p = F.softmax(logits_t / self.temperature, dim=1)
        weights = 1.0 + torch.exp(-entropy(p).detach())
        weights = (n * weights / weights.sum()).unsqueeze(1)
        confusion = (p * weights).T @ p
        confusion = confusion / confusion.sum(dim=1, keepdim=True)
        return (confusion.sum() - confusion.trace()) / k
