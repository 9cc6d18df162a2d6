"""DAN (Long et al., 2015): align the domains by the multi-kernel MMD of their features,

    A = MK-MMD²(f_s, f_t) = ‖E_s[φ(f_s)] − E_t[φ(f_t)]‖²_H,   k = Σ_u Gaussian(σ_u)

(unbiased quadratic estimate, or the linear-time one with ``linear``). No discriminator.
"""

from __future__ import annotations

from typing import Any

import torch

from transferlab.losses.alignment.dan import MultipleKernelMMD
from transferlab.methods.adaptation.base import DomainAdaptationModule


class DANModule(DomainAdaptationModule):
    """Args: kernel_multipliers (σ_u² / σ̄², the mean squared distance), linear (O(N) estimate)."""

    def __init__(
        self,
        *args: Any,
        kernel_multipliers: list[float] | None = None,
        linear: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        multipliers = tuple(kernel_multipliers or (0.125, 0.25, 0.5, 1.0, 2.0))
        self.mmd = MultipleKernelMMD(multipliers, linear=linear)

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        return self.mmd(f_s, f_t)
