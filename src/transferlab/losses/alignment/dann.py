"""DANN's domain-adversarial loss."""

from __future__ import annotations

import torch
from torch import nn

from transferlab.losses.alignment.common import balanced_domain_bce, domain_accuracy
from transferlab.losses.domain import reverse_gradient


class DomainAdversarialLoss(nn.Module):
    """DANN's domain loss (Ganin & Lempitsky, 2015) through a gradient-reversal layer R_c:

        L_d = ½·[ (1/N_s)·Σ_i BCE(d(R_c(f_s,i)), 1) + (1/N_t)·Σ_j BCE(d(R_c(f_t,j)), 0) ]

    The discriminator d descends L_d (it learns to tell the domains apart); R_c is the identity
    forward and multiplies the gradient by −c backward, so the features ascend c·L_d (they learn
    to make the domains indistinguishable). ``coefficient`` is c, passed at each call so a
    schedule can drive it.

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D); returns (the 0-d loss, the 0-d balanced domain
    accuracy, detached). Example::

        >>> loss = DomainAdversarialLoss(nn.Linear(16, 1))
        >>> value, accuracy = loss(torch.randn(8, 16), torch.randn(8, 16), coefficient=1.0)
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(
        self, f_s: torch.Tensor, f_t: torch.Tensor, coefficient: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.discriminator(reverse_gradient(torch.cat([f_s, f_t]), coefficient)).squeeze(1)
        source, target = logits[: f_s.shape[0]], logits[f_s.shape[0] :]
        return balanced_domain_bce(source, target), domain_accuracy(source, target).detach()
