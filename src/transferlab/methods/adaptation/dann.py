"""DANN (Ganin & Lempitsky, 2015): align the domains by fooling a domain discriminator d,

    A = ½·[ mean_s BCE(d(R_c(f_s)), 1) + mean_t BCE(d(R_c(f_t)), 0) ]

through a gradient-reversal layer R_c whose coefficient warms up as c(p) = 2/(1 + exp(−γp)) − 1.
d descends λ·A; the features ascend c·λ·A. Target labels are never used.
"""

from __future__ import annotations

from typing import Any

from transferlab.losses.alignment.dann import DomainAdversarialLoss
from transferlab.methods.adaptation.base import AdversarialAdaptationModule
from transferlab.nets.discriminator import domain_discriminator


class DANNModule(AdversarialAdaptationModule):
    """Args: discriminator_hidden, discriminator_layers, discriminator_dropout: the MLP d on
    ``features()``; the rest as ``AdversarialAdaptationModule``."""

    def __init__(
        self,
        *args: Any,
        discriminator_hidden: int = 1024,
        discriminator_layers: int = 2,
        discriminator_dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.domain_adversarial = DomainAdversarialLoss(
            domain_discriminator(
                self.net.feature_dim, discriminator_hidden, discriminator_layers, discriminator_dropout
            )
        )
