"""Objectives of test-time adaptation: what a model minimises on unlabelled test batches."""

from __future__ import annotations

import torch
from torch import nn


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(p_i) = −Σ_k p_ik·log p_ik per row, p_i = softmax(logits_i), from the log-softmax (no log 0).

    Shapes: ``logits`` (N, K) -> (N,).
    """
    log_p = logits.log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


class EntropyMinimization(nn.Module):
    """TENT's objective (Wang et al., ICLR 2021): L = (1/N)·Σ_i H(p_i), the mean Shannon entropy
    of the batch's predictions p_i = softmax(logits_i).

    Shapes: ``logits`` (N, K) -> a scalar.
    """

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return prediction_entropy(logits).mean()


class InformationMaximizationLoss(nn.Module):
    """SHOT-IM's objective (Liang et al., ICML 2020): L = (1/N)·Σ_i H_ε(p_i) − H_ε(p̄), with
    p̄ = (1/N)·Σ_i p_i and H_ε(q) = −Σ_k q_k·log(q_k + ε): confident predictions (low entropy
    per image) that together cover the classes (high entropy of the mean); ε = 1e-5 as the
    authors'.

    Shapes: ``logits`` (N, K) -> a scalar.
    """

    def __init__(self, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(dim=1)
        per_image = -(p * torch.log(p + self.epsilon)).sum(dim=1).mean()
        mean = p.mean(dim=0)
        diversity = -(mean * torch.log(mean + self.epsilon)).sum()
        return per_image - diversity
