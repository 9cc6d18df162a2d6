"""The fine-tuning regularizers' slot: what a regularizer reads, its base classes and R = 0."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from transferlab.losses.slot import SlotMember

Named = Iterable[tuple[str, torch.Tensor]]


@dataclass
class RegularizerInputs:
    """What a regularizer may read. ``feature_maps`` and ``source_feature_maps`` map a layer name
    of ``layers`` (``""``: the backbone's output) to its (N, C, H, W) or (N, D) output."""

    backbone: list[tuple[str, torch.Tensor]]
    head: list[tuple[str, torch.Tensor]]
    source_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    features: torch.Tensor | None = None
    feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    source_feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)


def squared_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    terms = [t.pow(2).sum() for t in tensors]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class Regularizer(SlotMember):
    """Base of every fine-tuning regularizer.

    ``needs``: the optional inputs it reads (``SOURCE_WEIGHTS``, ``FEATURES``, ``FEATURE_MAPS``);
    ``layers``: the backbone layers whose feature maps it reads (with ``FEATURE_MAPS``);
    ``regularises_backbone`` / ``regularises_head``: which parameters already carry a penalty, so
    the method switches the optimiser's weight decay off for them.
    """

    regularises_backbone = False
    regularises_head = False
    is_zero = False  # R = 0 whatever its inputs (plain fine-tuning)

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        raise NotImplementedError


class ParameterRegularizer(Regularizer):
    """A penalty on parameters: ``backbone_weight`` (α) weighs the backbone term, ``head_weight``
    (β) the head term β/2·‖w_head‖²."""

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
    def regularises_backbone(self) -> bool:  # type: ignore[override]
        return self.backbone_weight > 0

    @property
    def regularises_head(self) -> bool:  # type: ignore[override]
        return self.head_weight > 0

    def head_penalty(self, head: Named) -> torch.Tensor:
        """β/2·‖w_head‖²."""
        return 0.5 * self.head_weight * squared_norm(p for _, p in head)
