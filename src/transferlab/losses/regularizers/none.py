"""R = 0: plain fine-tuning."""

from __future__ import annotations

import torch

from transferlab.losses.regularizers.base import Regularizer, RegularizerInputs


class NoRegularizer(Regularizer):
    """R = 0: plain fine-tuning (the same as λ = 0)."""

    is_zero = True

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        return torch.zeros(())
