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

from dataclasses import dataclass, field

import torch

from transferlab.losses.slot import SlotMember


@dataclass
class DistillationInputs:
    """What a distillation loss may read, for one training batch of N images: the student's and
    the teacher's logits (N, K), features (N, D_s) and (N, D_t), feature maps at the member's
    ``layers`` / ``reference_layers``, the labels (N,) and the images' positions in the training
    split (N,), and the epoch (0-based; for a warm-up). The teacher's values carry no gradient."""

    labels: torch.Tensor
    student_logits: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    student_features: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None
    student_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: torch.Tensor | None = None
    epoch: int = 0


class DistillationLoss(SlotMember):
    """Base of every distillation loss: ``lam`` is its weight λ ≥ 0 in the student's objective."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"lam={lam} must be >= 0 (the weight of this loss; 0 switches it off)")
        self.lam = lam

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        raise NotImplementedError
