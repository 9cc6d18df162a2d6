"""The oracle: target validation accuracy. It reads the target's labels, so it is not a
validator an unsupervised method may select with; it stands beside the others in every report
as the best any validator could do."""

from __future__ import annotations

from transferlab.validators.base import ValidationOutputs, Validator


class Oracle(Validator):
    """(1/N_t)·Σ_j [argmax_k t_jk = y_j] on the target validation images (their labels)."""

    uses_target_labels = True

    def score(self, outputs: ValidationOutputs) -> float:
        if outputs.target_labels is None:
            raise ValueError("the oracle needs the target's validation labels")
        return (outputs.target_logits.argmax(1) == outputs.target_labels).float().mean().item()
