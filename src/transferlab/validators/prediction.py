"""Validators on the target's predictions p = softmax(logits), (N_t, K): entropy, IM and BNM."""

from __future__ import annotations

import torch

from transferlab.validators.base import ValidationOutputs, Validator, entropy


def _probabilities(outputs: ValidationOutputs) -> torch.Tensor:
    return outputs.target_logits.float().softmax(dim=1)


class Entropy(Validator):
    """−(1/N_t)·Σ_j H(p_j): confident target predictions score higher (the negated mean
    prediction entropy; Morerio et al., 2018, and the EntropyValidator of pytorch-adapt)."""

    def score(self, outputs: ValidationOutputs) -> float:
        return -entropy(_probabilities(outputs)).mean().item()


class InformationMaximization(Validator):
    """IM = H(p̄) − (1/N_t)·Σ_j H(p_j), p̄ = (1/N_t)·Σ_j p_j: confident and diverse target
    predictions (the mutual information between inputs and predicted classes; Gomes, Krause &
    Perona, 2010; SHOT's objective; pytorch-adapt's IMValidator, the sum of its entropy and
    diversity scores)."""

    def score(self, outputs: ValidationOutputs) -> float:
        p = _probabilities(outputs)
        return (entropy(p.mean(0, keepdim=True))[0] - entropy(p).mean()).item()


class BatchNuclearNorm(Validator):
    """BNM = ‖P‖_* / N_t, the nuclear norm (sum of singular values) of the (N_t, K) target
    prediction matrix: high when predictions are both confident and diverse (Cui et al., 2020;
    as a validator, Musgrave et al., 2022; pytorch-adapt's BNMValidator negates BNMLoss, which is
    −‖P‖_*/N)."""

    def score(self, outputs: ValidationOutputs) -> float:
        p = _probabilities(outputs)
        return (torch.linalg.svdvals(p).sum() / p.shape[0]).item()
