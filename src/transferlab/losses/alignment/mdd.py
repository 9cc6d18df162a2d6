"""Margin Disparity Discrepancy."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.domain import reverse_gradient


def shifted_log(x: torch.Tensor, offset: float = 1e-6) -> torch.Tensor:
    """log(min(x + offset, 1)): a log that stays finite at x = 0."""
    return torch.log(torch.clamp(x + offset, max=1.0))


class MarginDisparityDiscrepancy(nn.Module):
    """MDD (Zhang et al., ICML 2019), for classification, with an adversarial head f':

        D_γ = γ·mean_s log softmax(f'(x_s))[h(x_s)] + mean_t log(1 − softmax(f'(x_t))[h(x_t)])

    h(x) = argmax of the main head's logits (no gradient through it), f' an MLP on the features
    behind a gradient-reversal layer R_c. The method minimises −D_γ: f' ascends D_γ (it agrees with
    h on the source, disagrees on the target), the features descend c·D_γ. γ is the margin
    (``margin``, 4 in the paper and the reference library for most tasks).

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D), ``logits_s`` (N_s, K), ``logits_t`` (N_t, K); returns
    (−D_γ as a 0-d loss, the adversarial head's agreement with h on the target, detached).
    """

    def __init__(self, adversarial_head: nn.Module, margin: float = 4.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin={margin} must be > 0 (MDD's γ, 4 in the paper)")
        self.adversarial_head = adversarial_head
        self.margin = margin

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adversarial = self.adversarial_head(reverse_gradient(torch.cat([f_s, f_t]), coefficient))
        adv_s, adv_t = adversarial[: f_s.shape[0]], adversarial[f_s.shape[0] :]
        h_s, h_t = logits_s.argmax(1).detach(), logits_t.argmax(1).detach()
        source = -F.cross_entropy(adv_s, h_s)  # mean log softmax(f'(x_s))[h]
        target = F.nll_loss(shifted_log(1.0 - F.softmax(adv_t, dim=1)), h_t)  # −mean log(1 − p[h])
        disparity = self.margin * source - target
        agreement = (adv_t.argmax(1) == h_t).float().mean().detach()
        return -disparity, agreement
