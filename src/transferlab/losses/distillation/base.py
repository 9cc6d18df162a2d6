"""The distillation slot: what a distillation loss reads, and its base.

The student's objective is ``ce_weight``·CE(y, s) + Σ_m λ_m·L_m, one term per member m, each with
its own weight λ_m (``lam``, ≥ 0), as RepDistiller combines its losses (its -r, -a, -b). A
member declares in ``needs`` what it reads (``losses/slot.py``) and receives a
``DistillationInputs`` holding it; one that owns parameters or buffers (FitNets' regressor, CRD's
embeddings and memory) makes them in ``setup``, where it sees both nets and the training set's
size, and the family puts its parameters in the optimiser and its buffers in the checkpoints.
One file per loss in this folder, as in RepDistiller's ``distiller_zoo``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from transferlab.losses.slot import FEATURE_MAPS, SlotMember


@dataclass
class DistillationInputs:
    """What a distillation loss may read, for one training batch of N images: the student's and
    the teacher's logits (N, K), features (N, D_s) and (N, D_t), feature maps at the member's
    ``layers`` / ``reference_layers``, the labels (N,) and the images' positions in the training
    split (N,), the epoch (0-based) and the run's length in epochs (for a warm-up). The teacher's
    values carry no gradient."""

    labels: torch.Tensor
    student_logits: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    student_features: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None
    student_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: torch.Tensor | None = None
    epoch: int = 0
    epochs: int = 1


class DistillationLoss(SlotMember):
    """Base of every distillation loss: ``lam`` is its weight λ ≥ 0 in the student's objective."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"lam={lam} must be >= 0 (the weight of this loss; 0 switches it off)")
        self.lam = lam

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        raise NotImplementedError


class LayerPairLoss(DistillationLoss):
    """Base of a loss on feature maps, summed over layer pairs: the student's ``layers`` paired
    in order with the teacher's ``reference_layers`` (the same names by default)."""

    needs = frozenset({FEATURE_MAPS})

    def __init__(
        self, layers: Sequence[str], reference_layers: Sequence[str] | None = None, lam: float = 1.0
    ) -> None:
        super().__init__(lam)
        self.layers = tuple(str(layer) for layer in layers)
        self._reference_layers = tuple(str(layer) for layer in reference_layers or self.layers)
        if len(self._reference_layers) != len(self.layers):
            raise ValueError(
                f"reference_layers={list(self._reference_layers)} must pair one teacher layer with "
                f"each student layer {list(self.layers)}"
            )

    @property
    def reference_layers(self) -> tuple[str, ...]:
        return self._reference_layers

    def pairs(self, inputs: DistillationInputs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(student map, teacher map without gradient) of each layer pair."""
        for student_layer, teacher_layer in zip(self.layers, self.reference_layers, strict=True):
            yield inputs.student_maps[student_layer], inputs.teacher_maps[teacher_layer].detach()
