"""The information-maximisation validator on the target's predictions."""

from __future__ import annotations

from transferlab.validators.base import ValidationOutputs, Validator, entropy, target_probabilities


class InformationMaximization(Validator):
    """IM = H(p̄) − (1/N_t)·Σ_j H(p_j), p̄ = (1/N_t)·Σ_j p_j: confident and diverse target
    predictions (the mutual information between inputs and predicted classes; Gomes, Krause &
    Perona, 2010; SHOT's objective; pytorch-adapt's IMValidator, the sum of its entropy and
    diversity scores)."""

    def score(self, outputs: ValidationOutputs) -> float:
        p = target_probabilities(outputs)
        return (entropy(p.mean(0, keepdim=True))[0] - entropy(p).mean()).item()
