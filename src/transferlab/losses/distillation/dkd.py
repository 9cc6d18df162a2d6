"""DKD: Zhao, Cui, Song, Qiu & Liang (CVPR 2022), decoupled knowledge distillation."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import LOGITS


def decoupled_kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(TCKD, NCKD), each T²·KL averaged over the batch: TCKD between the binary distributions
    [p_y, 1 − p_y] of the target class y, NCKD between the distributions over the non-target
    classes renormalised among themselves (p = softmax(logits / T)); (N, K), (N, K), (N,)."""
    target = F.one_hot(labels, student_logits.shape[1]).bool()
    p_s = F.softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    binary_s = torch.stack([p_s[target], (p_s * ~target).sum(1)], dim=1)
    binary_t = torch.stack([p_t[target], (p_t * ~target).sum(1)], dim=1)
    n = labels.shape[0]
    tckd = F.kl_div(binary_s.log(), binary_t, reduction="sum") * temperature**2 / n
    mask = 1000.0 * target  # the target class out of the softmax, as the reference code does
    log_q_s = F.log_softmax(student_logits / temperature - mask, dim=1)
    q_t = F.softmax(teacher_logits.detach() / temperature - mask, dim=1)
    nckd = F.kl_div(log_q_s, q_t, reduction="sum") * temperature**2 / n
    return tckd, nckd


class DecoupledKD(DistillationLoss):
    """L_DKD = w(e)·(α·TCKD + β·NCKD) (``decoupled_kd``), w(e) = min((e + 1) / warm-up, 1) over the
    0-based epoch e: KD split into the target class's part and the non-target classes' part,
    the latter given its own, larger weight. Reads the logits and the labels; returns a 0-d
    tensor. mdistiller's CIFAR-100 settings: α = 1, β = 8, T = 4, a 20-epoch warm-up, CE weight 1
    (its epochs count from 1, so its first epoch's weight is 1/20, as here)."""

    needs = frozenset({LOGITS})

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup_epochs: int = 20,
        lam: float = 1.0,
    ) -> None:
        super().__init__(lam)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (DKD's is 4)")
        if warmup_epochs < 1:
            raise ValueError(f"warmup_epochs={warmup_epochs} must be >= 1")
        self.alpha, self.beta, self.temperature, self.warmup_epochs = alpha, beta, temperature, warmup_epochs

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        tckd, nckd = decoupled_kd(
            inputs.student_logits, inputs.teacher_logits, inputs.labels, self.temperature
        )
        warmup = min((inputs.epoch + 1) / self.warmup_epochs, 1.0)
        return warmup * (self.alpha * tckd + self.beta * nckd)
