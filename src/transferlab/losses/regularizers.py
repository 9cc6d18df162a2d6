"""Parameter regularizers R(θ_s, θ_t) for fine-tuning: min L_t(θ_t) + λ·R(θ_s, θ_t).

Each takes the fine-tuned net's backbone and head parameters (and, for the SP variants, the
source weights θ_s as detached tensors) and returns a scalar. λ is applied by the method.
α (``backbone_weight``) and β (``head_weight``) are Li et al.'s names for the two terms' weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

Named = Iterable[tuple[str, torch.Tensor]]


def _squared_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    terms = [t.pow(2).sum() for t in tensors]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class ParameterRegularizer(nn.Module):
    """Base: ``backbone_weight`` (α in Li et al.) weighs the backbone term, ``head_weight`` (β)
    the head term.

    ``regularises_backbone`` / ``regularises_head`` tell the method which parameters already
    have a penalty, so it can switch the optimiser's weight decay off for them.
    """

    def __init__(self, backbone_weight: float = 1.0, head_weight: float = 0.0) -> None:
        super().__init__()
        if backbone_weight < 0 or head_weight < 0:
            raise ValueError(
                f"regularizer weights must be >= 0 "
                f"(backbone_weight={backbone_weight}, head_weight={head_weight})"
            )
        self.backbone_weight = backbone_weight
        self.head_weight = head_weight

    @property
    def regularises_backbone(self) -> bool:
        return self.backbone_weight > 0

    @property
    def regularises_head(self) -> bool:
        return self.head_weight > 0

    def forward(self, backbone: Named, head: Named, source_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def head_penalty(self, head: Named) -> torch.Tensor:
        """β/2·‖w_head‖²."""
        return 0.5 * self.head_weight * _squared_norm(p for _, p in head)


class NoRegularizer(ParameterRegularizer):
    """R = 0: plain fine-tuning (the same as λ = 0)."""

    def __init__(self) -> None:
        super().__init__(backbone_weight=0.0, head_weight=0.0)

    def forward(self, backbone: Named, head: Named, source_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.zeros(())


class L2(ParameterRegularizer):
    """R = α/2·‖w_backbone‖² + β/2·‖w_head‖²: explicit weight decay, a pull toward zero.

    Shapes: any parameter shapes; returns a 0-d tensor. Example::

        >>> net = torch.nn.Linear(2, 2)
        >>> L2(backbone_weight=1.0)(net.named_parameters(), [], {})  # == ½·Σ w²
    """

    def forward(self, backbone: Named, head: Named, source_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return 0.5 * self.backbone_weight * _squared_norm(p for _, p in backbone) + self.head_penalty(head)


class L2SP(ParameterRegularizer):
    """L2-SP (Li, Grandvalet & Davoine, 2018): R = α/2·‖w_backbone − w_s‖² + β/2·‖w_head‖².

    ``w_s`` are the source weights of the backbone (a dict from parameter name to a detached
    tensor of the same shape). R is exactly 0 when fine-tuning starts, and its gradient on a
    backbone weight is α·(w − w_s). Returns a 0-d tensor. Example::

        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> L2SP(backbone_weight=1.0)([("w", w)], [], {"w": torch.tensor([1.0, 0.0])})  # ½·(0² + 2²) = 2
    """

    def forward(self, backbone: Named, head: Named, source_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        drift = _squared_norm(p - source_weights[name] for name, p in backbone)
        return 0.5 * self.backbone_weight * drift + self.head_penalty(head)
