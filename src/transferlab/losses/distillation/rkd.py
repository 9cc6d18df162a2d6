"""RKD: Park, Kim, Lu & Cho (CVPR 2019), relational knowledge distillation (distance and angle)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURES


def pairwise_distances(features: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """ψ_D[i, j] = ‖f_i − f_j‖ / μ, μ the mean of the non-zero distances: (N, D) -> (N, N)."""
    squared = features.pow(2).sum(1)
    distances = (squared[:, None] + squared[None, :] - 2 * features @ features.T).clamp_min(eps).sqrt()
    distances = distances * (1 - torch.eye(len(features), device=features.device))
    return distances / distances[distances > 0].mean()


def triplet_angles(features: torch.Tensor) -> torch.Tensor:
    """ψ_A[i, j, k] = cos∠(f_i − f_j, f_k − f_j), flattened: (N, D) -> (N³,)."""
    differences = F.normalize(features[None, :, :] - features[:, None, :], dim=2)  # [j, i] = f_i − f_j
    return torch.bmm(differences, differences.transpose(1, 2)).flatten()


class RelationalKD(DistillationLoss):
    """L_RKD = w_d·ℓ_δ(ψ_D^s, ψ_D^t) + w_a·ℓ_δ(ψ_A^s, ψ_A^t), ℓ_δ the Huber (smooth L1) loss averaged
    over the N² distances and N³ angles of the batch's pooled features (``pairwise_distances``,
    ``triplet_angles``): the student keeps the teacher's geometry, not its coordinates. Shapes:
    (N, D_s), (N, D_t); returns a 0-d tensor. The paper's and RepDistiller's w_d = 25, w_a = 50
    (its β = 1)."""

    needs = frozenset({FEATURES})

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0, lam: float = 1.0) -> None:
        super().__init__(lam)
        if distance_weight < 0 or angle_weight < 0:
            raise ValueError(f"distance_weight={distance_weight}, angle_weight={angle_weight} must be >= 0")
        self.distance_weight = distance_weight
        self.angle_weight = angle_weight

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        student, teacher = inputs.student_features, inputs.teacher_features.detach()
        with torch.no_grad():
            teacher_distances, teacher_angles = pairwise_distances(teacher), triplet_angles(teacher)
        distance = F.smooth_l1_loss(pairwise_distances(student), teacher_distances)
        angle = F.smooth_l1_loss(triplet_angles(student), teacher_angles)
        return self.distance_weight * distance + self.angle_weight * angle
