"""Distillation losses: the members of the distillation slot.

The student's objective is ``ce_weight``·CE(y, s) + Σ_m λ_m·L_m, one term per member m, each with
its own weight λ_m (``lam``, ≥ 0), as RepDistiller combines its losses (its -r, -a, -b). A
member declares in ``needs`` what it reads (``losses/slot.py``) and receives a
``DistillationInputs`` holding exactly that; one that owns parameters (FitNets' regressor) makes
them in ``setup``, where it sees both nets, and the family puts them in the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.slot import FEATURES, LOGITS, SetupContext, SlotMember


@dataclass
class DistillationInputs:
    """What a distillation loss may read, for one training batch of N images: the student's and
    the teacher's logits (N, K), features (N, D_s) and (N, D_t), feature maps at the member's
    ``layers`` / ``reference_layers``, the labels (N,) and the images' positions in the training
    split (N,). The teacher's values carry no gradient."""

    labels: torch.Tensor
    student_logits: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    student_features: torch.Tensor | None = None
    teacher_features: torch.Tensor | None = None
    student_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    teacher_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    indices: torch.Tensor | None = None


class DistillationLoss(SlotMember):
    """Base of every distillation loss: ``lam`` is its weight λ ≥ 0 in the student's objective."""

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"lam={lam} must be >= 0 (the weight of this loss; 0 switches it off)")
        self.lam = lam

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        raise NotImplementedError


def kd_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T²·KL(softmax(t/T) ‖ softmax(s/T)) averaged over the batch: (N, K), (N, K) -> 0-d."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature * temperature * kl


class KDLoss(DistillationLoss):
    """Soft targets (Hinton et al., 2015): L_KD = T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged
    over the batch.

    = T²/N · Σ_n Σ_k p_t[n,k]·(log p_t[n,k] − log p_s[n,k]), with p = softmax(logits / T), s the
    student's and t the teacher's logits, (N, K) each; returns a 0-d tensor. The T² factor keeps
    the gradient's size of the same order across temperatures: ∂L/∂s = T·(p_s − p_t)/N, which tends
    to (s − t)/(K·N) for large T (zero-mean logits), where without T² it would shrink like 1/T².
    It is 0 exactly when the two distributions agree.

    Example::

        >>> kd = KDLoss(temperature=4.0)
        >>> s, t = torch.randn(8, 10), torch.randn(8, 10)
        >>> kd(DistillationInputs(torch.zeros(8, dtype=torch.long), student_logits=s, teacher_logits=t))
    """

    needs = frozenset({LOGITS})

    def __init__(self, temperature: float = 4.0, lam: float = 0.9) -> None:
        super().__init__(lam)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (try 4)")
        self.temperature = temperature

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        return kd_divergence(inputs.student_logits, inputs.teacher_logits, self.temperature)


class HintLoss(DistillationLoss):
    """FitNets hint (Romero et al., 2015) on the pooled features: L_hint = ‖r(f_s) − f_t‖² / (N·D_t).

    ``r`` is a linear regressor from the student's D_s features to the teacher's D_t (the identity
    when the widths agree), made in ``setup`` where both nets are known and trained with the
    student. Shapes: ``student_features`` (N, D_s), ``teacher_features`` (N, D_t); returns a 0-d
    tensor (the mean squared error). RepDistiller's FitNet regresses a middle feature map with a
    convolution instead; this is its pooled-feature form.
    """

    needs = frozenset({FEATURES})

    def __init__(self, lam: float = 1.0) -> None:
        super().__init__(lam)
        self.regressor: nn.Module | None = None

    def setup(self, context: SetupContext) -> None:
        if self.regressor is None:
            self.build(context.net.feature_dim, context.reference.feature_dim)

    def build(self, student_dim: int, teacher_dim: int) -> None:
        self.regressor = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        return F.mse_loss(self.regressor(inputs.student_features), inputs.teacher_features.detach())
