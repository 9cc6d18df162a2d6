"""MCC (Jin et al., ECCV 2020): align by making the target's predictions confident and unconfused,

    A = L_MCC(logits_t) = (1/K)·Σ_j Σ_{k≠j} C̃_jk,

C̃ the row-normalised class confusion matrix of the target batch's temperature-scaled
predictions, each sample weighted by its certainty (``losses.alignment.MinimumClassConfusion``).
Only the target's predictions enter; no discriminator.
"""

from __future__ import annotations

from typing import Any

import torch

from transferlab.losses.alignment.mcc import MinimumClassConfusion
from transferlab.methods.adaptation.base import DomainAdaptationModule


class MCCModule(DomainAdaptationModule):
    """Args: temperature: T of the predictions' softmax (2.5, the paper's and the reference
    library's); the rest as ``DomainAdaptationModule``."""

    def __init__(self, *args: Any, temperature: float = 2.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mcc = MinimumClassConfusion(temperature)

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        return self.mcc(logits_t)
