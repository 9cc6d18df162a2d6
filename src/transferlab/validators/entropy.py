"""The entropy validator on the target's predictions."""

from __future__ import annotations

from transferlab.validators.base import ValidationOutputs, Validator, entropy, target_probabilities


class Entropy(Validator):
    """−(1/N_t)·Σ_j H(p_j): confident target predictions score higher (the negated mean
    prediction entropy; Morerio et al., 2018, and the EntropyValidator of pytorch-adapt)."""

    def score(self, outputs: ValidationOutputs) -> float:
        return -entropy(target_probabilities(outputs)).mean().item()
