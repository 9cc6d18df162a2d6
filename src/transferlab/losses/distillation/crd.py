"""CRD: Tian, Krishnan & Isola (ICLR 2020), contrastive representation distillation."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURES, INDICES, SetupContext
from transferlab.utils.log import log


def nce_loss(scores: torch.Tensor, memory_size: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE objective (its Eq. 18): scores (N, 1 + K), column 0 the positive's P, the others
    K negatives' drawn uniformly from ``memory_size`` entries (noise P_n = 1/memory_size):
    −(1/N)·Σ_n [log(P_0 / (P_0 + K·P_n)) + Σ_k log(K·P_n / (P_k + K·P_n))]."""
    k = scores.shape[1] - 1
    noise = k / memory_size
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + eps))
    negative = torch.log(noise / (scores[:, 1:] + noise + eps))
    return -(positive.sum() + negative.sum()) / scores.shape[0]


class ContrastiveRepresentationDistillation(DistillationLoss):
    """L_CRD = NCE(teacher anchor, student memory) + NCE(student anchor, teacher memory).

    The pooled features of both nets are embedded (a linear map each, to ``embed_dim``) and
    L2-normalised: v_s, v_t. A memory holds one embedding per training image for each net; for an
    image i of the batch, its positive is the other net's memory entry of i and its K negatives
    (``negatives``; null: 16384, or every other training image when fewer) the entries of
    images drawn uniformly from the training split; a score is
    P = exp(⟨v, m⟩ / τ) / Z, Z fixed at the first step to (mean score)·n. After the scores, the
    memory entries of the batch move toward the new embeddings (m ← normalise(μ·m + (1 − μ)·v)).
    Reads the pooled features and the images' positions; returns a 0-d tensor.

    As RepDistiller's ``CRDLoss`` (embed_dim 128, τ = 0.07, μ = 0.5, K = 16384, its β = 0.8),
    except that the negatives are drawn from the whole training split (its default ``--mode
    exact`` draws them from the other classes). The memory and Z are buffers, so they are saved
    with the run and restored on resume. Under DDP every rank updates its own memory.
    """

    needs = frozenset({FEATURES, INDICES})

    def __init__(
        self,
        embed_dim: int = 128,
        negatives: int | None = None,
        temperature: float = 0.07,
        momentum: float = 0.5,
        lam: float = 0.8,
    ) -> None:
        super().__init__(lam)
        if (negatives is not None and negatives < 1) or embed_dim < 1:
            raise ValueError(f"negatives={negatives} and embed_dim={embed_dim} must be >= 1")
        if not 0 <= momentum < 1 or temperature <= 0:
            raise ValueError(f"momentum={momentum} must be in [0, 1) and temperature={temperature} > 0")
        self.embed_dim, self.negatives = embed_dim, negatives
        self.temperature, self.momentum = temperature, momentum
        self.embed_student: nn.Module | None = None
        self.embed_teacher: nn.Module | None = None

    def setup(self, context: SetupContext) -> None:
        if self.embed_student is not None:
            return
        size = context.training_size
        if self.negatives is None:  # RepDistiller's K, or every other training image when fewer
            self.negatives = min(16384, size - 1)
            log.info("CRD: %d negatives per image (%d training images)", self.negatives, size)
        if self.negatives >= size:
            raise ValueError(
                f"negatives={self.negatives} needs more than {self.negatives} training images and the "
                f"training split has {size}: the memory holds one entry per training image; lower it "
                f"(e.g. negatives={max(1, size - 1)})"
            )
        self.build(context.net.feature_dim, context.reference.feature_dim, size)

    def build(self, student_dim: int, teacher_dim: int, memory_size: int) -> None:
        """The two embeddings and the two memories (uniform in ±1/√(d/3), as the reference)."""
        self.embed_student = nn.Linear(student_dim, self.embed_dim)
        self.embed_teacher = nn.Linear(teacher_dim, self.embed_dim)
        bound = 1.0 / math.sqrt(self.embed_dim / 3)
        for name in ("memory_student", "memory_teacher"):
            self.register_buffer(name, torch.rand(memory_size, self.embed_dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("normalisers", torch.full((2,), -1.0))  # Z of the two scores, set once

    def scores(self, memory: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """exp(⟨m, v⟩ / τ) for the (N, 1 + K, d) memory entries of each of the N embeddings v."""
        return torch.exp(torch.bmm(memory, v[:, :, None])[..., 0] / self.temperature)

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        v_s = F.normalize(self.embed_student(inputs.student_features.float()), dim=1)
        v_t = F.normalize(self.embed_teacher(inputs.teacher_features.detach().float()), dim=1)
        index = inputs.indices.to(v_s.device).long()
        size = self.memory_student.shape[0]
        drawn = torch.randint(0, size, (len(index), self.negatives + 1), device=v_s.device)
        drawn[:, 0] = index
        # the student's embedding against the teacher's memory, and the other way round
        scores_s = torch.exp(
            torch.bmm(self.memory_teacher[drawn].detach(), v_s[:, :, None])[..., 0] / self.temperature
        )
        scores_t = torch.exp(
            torch.bmm(self.memory_student[drawn].detach(), v_t[:, :, None])[..., 0] / self.temperature
        )
        if self.normalisers[0] < 0:
            self.normalisers.copy_(torch.stack([scores_s.mean(), scores_t.mean()]).detach() * size)
        loss = nce_loss(scores_s / self.normalisers[0], size) + nce_loss(scores_t / self.normalisers[1], size)
        with torch.no_grad():
            for memory, v in ((self.memory_student, v_s), (self.memory_teacher, v_t)):
                moved = memory[index] * self.momentum + v.detach() * (1 - self.momentum)
                memory.index_copy_(0, index, F.normalize(moved, dim=1))
        return loss
