"""Deep CORAL's covariance distance."""

from __future__ import annotations

import torch
from torch import nn


class CORALLoss(nn.Module):
    """Deep CORAL (Sun & Saenko, 2016): L = ‖C_s − C_t‖²_F / (4·D²), with C the (D, D) covariance
    of a domain's features, C = (fᵀf − (1ᵀf)ᵀ(1ᵀf)/N) / (N − 1).

    (The reference library's variant adds the squared difference of the means and averages
    instead of dividing by 4·D²; this is the paper's.) Shapes: ``f_s`` (N_s, D), ``f_t``
    (N_t, D), N ≥ 2 each; returns a 0-d tensor, 0 when the covariances agree. Example::

        >>> CORALLoss()(torch.randn(8, 4), 3.0 * torch.randn(8, 4))  # > 0
    """

    @staticmethod
    def covariance(f: torch.Tensor) -> torch.Tensor:
        if f.shape[0] < 2:
            raise ValueError(f"a covariance needs at least two samples (got {f.shape[0]})")
        centred = f - f.mean(dim=0, keepdim=True)
        return centred.T @ centred / (f.shape[0] - 1)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        d = f_s.shape[1]
        return (self.covariance(f_s) - self.covariance(f_t)).pow(2).sum() / (4.0 * d * d)
