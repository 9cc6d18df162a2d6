"""FitNets: Romero et al. (2015), hints for thin deep nets."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURES, SetupContext


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
