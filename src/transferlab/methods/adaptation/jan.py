"""JAN (Long et al., ICML 2017): align the joint distribution of features and predictions,

    A = JMMD²((f_s, g_s), (f_t, g_t)),   k = k_features · k_predictions,

g = softmax(logits), the feature kernel DAN's multi-kernel Gaussian, the prediction kernel one
Gaussian of σ = 0.92 (``losses.alignment.JointMultipleKernelMMD``). No discriminator.
"""

from __future__ import annotations

from typing import Any

import torch

from transferlab.losses.alignment.jan import JointMultipleKernelMMD
from transferlab.methods.adaptation.base import DomainAdaptationModule


class JANModule(DomainAdaptationModule):
    """Args: kernel_multipliers (σ_u² / σ̄² of the feature kernels), prediction_sigma (σ of the
    prediction kernel), linear (the O(N) estimate); the rest as ``DomainAdaptationModule``."""

    def __init__(
        self,
        *args: Any,
        kernel_multipliers: list[float] | None = None,
        prediction_sigma: float = 0.92,
        linear: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        multipliers = tuple(kernel_multipliers or (0.125, 0.25, 0.5, 1.0, 2.0))
        self.jmmd = JointMultipleKernelMMD(multipliers, prediction_sigma, linear)

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        return self.jmmd(f_s, f_t, logits_s, logits_t)
