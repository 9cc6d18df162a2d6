"""KD: Hinton, Vinyals & Dean (2015), distilling the knowledge in a neural network."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import LOGITS


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
