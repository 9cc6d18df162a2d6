"""What the adversarial alignment losses share: the domain-balanced BCE, the discriminator's
accuracy and the prediction entropy."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def balanced_domain_bce(
    source_logits: torch.Tensor,
    target_logits: torch.Tensor,
    source_sample_weights: torch.Tensor | None = None,
    target_sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """½·(BCE(d_s, 1) averaged over the source + BCE(d_t, 0) averaged over the target).

    ``*_logits``: (N,) discriminator logits. ``*_sample_weights``: optional (N,) non-negative
    per-sample weights; each domain's average is then Σ w_i·BCE_i / Σ w_i. Returns a 0-d tensor.
    """

    def average(logits: torch.Tensor, label: float, weights: torch.Tensor | None) -> torch.Tensor:
        losses = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label), reduction="none")
        if weights is None:
            return losses.mean()
        return (weights * losses).sum() / weights.sum()

    return 0.5 * (
        average(source_logits, 1.0, source_sample_weights)
        + average(target_logits, 0.0, target_sample_weights)
    )


def domain_accuracy(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's accuracy, balanced as the loss is: ½·(source acc + target acc)."""
    return 0.5 * ((source_logits > 0).float().mean() + (target_logits <= 0).float().mean())


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """H(g) = −Σ_k g_k·log g_k per row: (N, K) -> (N,)."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1)
