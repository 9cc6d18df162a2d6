"""CDAN's conditional domain-adversarial loss and its multilinear map."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.alignment.common import balanced_domain_bce, domain_accuracy, entropy
from transferlab.losses.domain import reverse_gradient


class MultilinearMap(nn.Module):
    """CDAN's conditioning T(f, g) of features f (N, D) by class probabilities g (N, K).

    Full: T = g ⊗ f, the outer product flattened to (N, K·D). Randomized (Long et al., 2018,
    for large K·D): T = (R_f·f) ⊙ (R_g·g) / √d with fixed Gaussian R_f (d, D), R_g (d, K), so
    (N, d); E[⟨T(a), T(b)⟩] = ⟨a_f, b_f⟩·⟨a_g, b_g⟩, the inner product of the full map.
    """

    def __init__(self, feature_dim: int, num_classes: int, randomized_dim: int | None = None) -> None:
        super().__init__()
        self.randomized_dim = randomized_dim
        self.output_dim = feature_dim * num_classes if randomized_dim is None else randomized_dim
        if randomized_dim is not None:  # buffers: fixed, checkpointed, follow the device
            self.register_buffer("random_f", torch.randn(randomized_dim, feature_dim))
            self.register_buffer("random_g", torch.randn(randomized_dim, num_classes))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized_dim is None:
            return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)
        return (f @ self.random_f.T) * (g @ self.random_g.T) / math.sqrt(self.randomized_dim)


class ConditionalDomainAdversarialLoss(nn.Module):
    """CDAN (Long et al., 2018): the domain loss on features conditioned by predictions,

        L_d = ½·[ Σ_i w_i·BCE(d(R_c(T(f_i, g_i))), 1) / Σ_i w_i  over the source
                + Σ_j w_j·BCE(d(R_c(T(f_j, g_j))), 0) / Σ_j w_j  over the target ]

    with g = softmax(logits) (detached inside T: the classifier is trained by its own loss, as in
    the authors' code), T the multilinear map (``MultilinearMap``), and w = 1 (CDAN) or, with
    ``entropy_conditioning`` (CDAN+E), w = 1 + exp(−H(g)): confident, easy-to-transfer samples
    weigh more. Each domain's weights are normalised within the domain, as the authors' code does
    (thuml/CDAN ``pytorch/loss.py``: the source's and the target's weights each over their own sum;
    the reference library, TLlib, normalises over the joint batch); with w = 1 this is DANN's loss
    on T(f, g).

    The weights' gradient: by default none (w is computed from the detached g, as TLlib does). With
    ``reverse_entropy_gradient`` (the authors' CDAN+E), H(g) is computed from the live g behind a
    gradient reversal of the same coefficient c, so the classifier receives −c·∂L_d/∂H through the
    weights (the normalisers Σ w stay detached, as theirs).

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D), ``logits_s`` (N_s, K), ``logits_t`` (N_t, K);
    returns (0-d loss, 0-d domain accuracy). Example::

        >>> loss = ConditionalDomainAdversarialLoss(nn.Linear(16 * 3, 1), MultilinearMap(16, 3))
        >>> f_s, f_t, logits_s, logits_t = *torch.randn(16, 16).split(8), *torch.randn(16, 3).split(8)
        >>> value, accuracy = loss(f_s, f_t, logits_s, logits_t)
    """

    def __init__(
        self,
        discriminator: nn.Module,
        multilinear_map: MultilinearMap,
        entropy_conditioning: bool = False,
        reverse_entropy_gradient: bool = False,
    ) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.multilinear_map = multilinear_map
        self.entropy_conditioning = entropy_conditioning
        self.reverse_entropy_gradient = reverse_entropy_gradient

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        live = F.softmax(torch.cat([logits_s, logits_t]), dim=1)
        g = live.detach()
        h = self.multilinear_map(torch.cat([f_s, f_t]), g)
        logits = self.discriminator(reverse_gradient(h, coefficient)).squeeze(1)
        n = f_s.shape[0]
        source, target = logits[:n], logits[n:]
        accuracy = domain_accuracy(source, target).detach()
        if not self.entropy_conditioning:
            return balanced_domain_bce(source, target), accuracy
        if not self.reverse_entropy_gradient:
            weights = 1.0 + torch.exp(-entropy(g))
            return balanced_domain_bce(source, target, weights[:n], weights[n:]), accuracy
        weights = 1.0 + torch.exp(-reverse_gradient(entropy(live), coefficient))
        w_s, w_t = weights[:n], weights[n:]
        bce_s = F.binary_cross_entropy_with_logits(source, torch.ones_like(source), reduction="none")
        bce_t = F.binary_cross_entropy_with_logits(target, torch.zeros_like(target), reduction="none")
        loss = 0.5 * ((w_s * bce_s).sum() / w_s.sum().detach() + (w_t * bce_t).sum() / w_t.sum().detach())
        return loss, accuracy
