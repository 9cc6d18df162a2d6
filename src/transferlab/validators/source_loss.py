"""Source validators: how well the model does on the labelled source's validation images.

The classic label-free choice: the source's labels are available, the target's are not.
Reference: the "Source Val Accuracy" baseline of Musgrave et al. (2022)."""

from __future__ import annotations

from torch.nn import functional as F

from transferlab.validators.base import ValidationOutputs, Validator


class SourceLoss(Validator):
    """−(1/N_s)·Σ_i CE(y_i, s_i): the negated source validation cross-entropy (higher is better)."""

    def score(self, outputs: ValidationOutputs) -> float:
        return -F.cross_entropy(outputs.source_logits.float(), outputs.source_labels).item()
