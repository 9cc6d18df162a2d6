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
    """L_DKD = w(e)·(α·TCKD + β·NCKD) (``decoupled_kd``), w(e) = min((e + 1) / (f·E), 1) over the
    0-based epoch e of a run of E epochs, f the warm-up's fraction of the run: KD split into the
    target class's part and the non-target classes' part, the latter given its own, larger weight.
    Reads the logits and the labels; returns a 0-d tensor. mdistiller's CIFAR-100 settings: α = 1,
    T = 4, a warm-up of 20 of 240 epochs (f = 1/12; its epochs count from 1, so its first epoch's
    weight is 1/20, as here), CE weight 1, and β per teacher–student pair: 2 for ResNet-56 →
    ResNet-20 and ResNet-110 → ResNet-32, 6 for the WRN and VGG pairs, 8 (its default) for
    ResNet-32x4 → ResNet-8x4 and the pairs across families."""

    needs = frozenset({LOGITS})

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        warmup: float = 1 / 12,
        lam: float = 1.0,
    ) -> None:
        super().__init__(lam)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (DKD's is 4)")
        if not 0 < warmup <= 1:
            raise ValueError(
                f"warmup={warmup} must be in (0, 1]: a fraction of the run (mdistiller's 20 of 240 epochs)"
            )
        self.alpha, self.beta, self.temperature, self.warmup = alpha, beta, temperature, warmup

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        tckd, nckd = decoupled_kd(
            inputs.student_logits, inputs.teacher_logits, inputs.labels, self.temperature
        )
        weight = min((inputs.epoch + 1) / (self.warmup * max(inputs.epochs, 1)), 1.0)
        return weight * (self.alpha * tckd + self.beta * nckd)
