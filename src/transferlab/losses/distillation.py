"""Knowledge-distillation losses: soft targets (Hinton et al., 2015) and FitNets hints."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class KDLoss(nn.Module):
    """Soft-target loss L_KD = T²·KL(softmax(t/T) ‖ softmax(s/T)), averaged over the batch.

    = T²/N · Σ_n Σ_k p_t[n,k]·(log p_t[n,k] − log p_s[n,k]), with p = softmax(logits / T).

    Shapes: ``student_logits`` and ``teacher_logits`` are (N, K); returns a 0-d tensor. The T²
    factor keeps the gradient's size of the same order across temperatures: ∂L/∂s =
    T·(p_s − p_t)/N, which tends to (s − t)/(K·N) for large T (zero-mean logits), where without
    T² it would shrink like 1/T². It is 0 exactly when the two distributions agree.

    Example::

        >>> KDLoss(temperature=4.0)(torch.randn(8, 10), torch.randn(8, 10))
    """

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.temperature = temperature

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        log_p_student = F.log_softmax(student_logits / t, dim=1)
        log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=1)
        kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
        return t * t * kl


class HintLoss(nn.Module):
    """FitNets hint (Romero et al., 2015): L_hint = ‖r(f_s) − f_t‖² / (N·D_t).

    ``r`` is a linear regressor from the student's D_s features to the teacher's D_t (identity
    when the widths agree). Shapes: ``student_features`` (N, D_s), ``teacher_features``
    (N, D_t); returns a 0-d tensor (the mean squared error).
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.regressor = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.regressor(student_features), teacher_features.detach())
