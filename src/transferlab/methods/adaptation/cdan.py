"""CDAN (Long et al., 2018): DANN with the discriminator d conditioned on the predictions,

    A = ½·[ Σ_s w·BCE(d(R_c(T(f_s, g_s))), 1) / Σ_s w + Σ_t w·BCE(d(R_c(T(f_t, g_t))), 0) / Σ_t w ]

T(f, g) = g ⊗ f the multilinear map of features and class probabilities g = softmax(logits)
(randomized when K·D is large), w = 1, or 1 + exp(−H(g)) with ``entropy_conditioning`` (CDAN+E).
"""

from __future__ import annotations

from typing import Any

from transferlab.losses.alignment.cdan import ConditionalDomainAdversarialLoss, MultilinearMap
from transferlab.methods.adaptation.base import AdversarialAdaptationModule
from transferlab.nets.discriminator import domain_discriminator


class CDANModule(AdversarialAdaptationModule):
    """Args:
    entropy_conditioning: CDAN+E, weigh each sample by 1 + exp(−H(g)).
    reverse_entropy_gradient: the authors' CDAN+E: a reversed gradient reaches the classifier
        through the weights (default: the weights are detached, as in the reference library).
    randomized: use the randomized multilinear map of ``randomized_dim`` outputs; null picks it
        when K·D > 4096 (the authors' rule), so a 1024-d feature with 10 classes is randomized.
    discriminator_hidden, discriminator_layers, discriminator_dropout: the MLP d on T(f, g);
    the rest as ``AdversarialAdaptationModule``.
    """

    adversary_reads_logits = True

    def __init__(
        self,
        *args: Any,
        entropy_conditioning: bool = False,
        reverse_entropy_gradient: bool = False,
        randomized: bool | None = None,
        randomized_dim: int = 1024,
        discriminator_hidden: int = 1024,
        discriminator_layers: int = 2,
        discriminator_dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        full_dim = self.net.feature_dim * self.net.num_classes
        if randomized is None:
            randomized = full_dim > 4096
        multilinear_map = MultilinearMap(
            self.net.feature_dim, self.net.num_classes, randomized_dim if randomized else None
        )
        self.domain_adversarial = ConditionalDomainAdversarialLoss(
            domain_discriminator(
                multilinear_map.output_dim, discriminator_hidden, discriminator_layers, discriminator_dropout
            ),
            multilinear_map,
            entropy_conditioning,
            reverse_entropy_gradient,
        )
