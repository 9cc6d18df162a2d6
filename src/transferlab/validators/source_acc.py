"""Source validators: how well the model does on the labelled source's validation images.

The classic label-free choice: the source's labels are available, the target's are not.
Reference: the "Source Val Accuracy" baseline of Musgrave et al. (2022)."""

from __future__ import annotations

from transferlab.validators.base import ValidationOutputs, Validator


class SourceAccuracy(Validator):
    """(1/N_s)·Σ_i [argmax_k s_ik = y_i] on the source validation images."""

    def score(self, outputs: ValidationOutputs) -> float:
        return (outputs.source_logits.argmax(1) == outputs.source_labels).float().mean().item()
