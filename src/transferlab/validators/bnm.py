"""The batch-nuclear-norm validator on the target's predictions."""

from __future__ import annotations

import torch

from transferlab.validators.base import ValidationOutputs, Validator, target_probabilities


class BatchNuclearNorm(Validator):
    """BNM = ‖P‖_* / N_t, the nuclear norm (sum of singular values) of the (N_t, K) target
    prediction matrix: high when predictions are both confident and diverse (Cui et al., 2020;
    as a validator, Musgrave et al., 2022; pytorch-adapt's BNMValidator negates BNMLoss, which is
    −‖P‖_*/N)."""

    def score(self, outputs: ValidationOutputs) -> float:
        p = target_probabilities(outputs)
        return (torch.linalg.svdvals(p).sum() / p.shape[0]).item()
