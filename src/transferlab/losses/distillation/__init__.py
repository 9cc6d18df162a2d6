"""The distillation slot's members, one file each (RepDistiller's ``distiller_zoo`` layout)."""

from transferlab.losses.distillation.at import AttentionTransfer, attention_map
from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss, LayerPairLoss
from transferlab.losses.distillation.crd import ContrastiveRepresentationDistillation, nce_loss
from transferlab.losses.distillation.dkd import DecoupledKD, decoupled_kd
from transferlab.losses.distillation.fitnets import HintLoss
from transferlab.losses.distillation.kd import KDLoss, kd_divergence
from transferlab.losses.distillation.pkt import ProbabilisticKnowledgeTransfer, conditional_probabilities
from transferlab.losses.distillation.rkd import RelationalKD, pairwise_distances, triplet_angles
from transferlab.losses.distillation.sp import SimilarityPreserving, similarity

__all__ = [
    "AttentionTransfer",
    "ContrastiveRepresentationDistillation",
    "DecoupledKD",
    "DistillationInputs",
    "DistillationLoss",
    "HintLoss",
    "KDLoss",
    "LayerPairLoss",
    "ProbabilisticKnowledgeTransfer",
    "RelationalKD",
    "SimilarityPreserving",
    "attention_map",
    "conditional_probabilities",
    "decoupled_kd",
    "kd_divergence",
    "nce_loss",
    "pairwise_distances",
    "similarity",
    "triplet_angles",
]
