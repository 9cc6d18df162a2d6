"""Losses and regularizers, each an nn.Module whose docstring states its formula."""

from transferlab.losses.alignment import (
    ConditionalDomainAdversarialLoss,
    CORALLoss,
    DomainAdversarialLoss,
    MultilinearMap,
    MultipleKernelMMD,
)
from transferlab.losses.distillation import (
    AttentionTransfer,
    ContrastiveRepresentationDistillation,
    DecoupledKD,
    DistillationInputs,
    DistillationLoss,
    HintLoss,
    KDLoss,
    ProbabilisticKnowledgeTransfer,
    RelationalKD,
    SimilarityPreserving,
    kd_divergence,
)
from transferlab.losses.domain import GradientReversal, reversal_warmup, reverse_gradient
from transferlab.losses.regularizers import (
    L2,
    L2SP,
    BatchSpectralShrinkage,
    FeatureMapDistance,
    NoRegularizer,
    ParameterRegularizer,
    Regularizer,
    RegularizerInputs,
)
from transferlab.losses.slot import SetupContext, SlotMember

__all__ = [
    "L2",
    "L2SP",
    "AttentionTransfer",
    "BatchSpectralShrinkage",
    "CORALLoss",
    "ConditionalDomainAdversarialLoss",
    "ContrastiveRepresentationDistillation",
    "DecoupledKD",
    "DistillationInputs",
    "DistillationLoss",
    "DomainAdversarialLoss",
    "FeatureMapDistance",
    "GradientReversal",
    "HintLoss",
    "KDLoss",
    "MultilinearMap",
    "MultipleKernelMMD",
    "NoRegularizer",
    "ParameterRegularizer",
    "ProbabilisticKnowledgeTransfer",
    "Regularizer",
    "RegularizerInputs",
    "RelationalKD",
    "SetupContext",
    "SimilarityPreserving",
    "SlotMember",
    "kd_divergence",
    "reversal_warmup",
    "reverse_gradient",
]
