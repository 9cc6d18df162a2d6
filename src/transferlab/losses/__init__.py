"""Losses and regularizers, each an nn.Module whose docstring states its formula."""

from transferlab.losses.alignment import (
    ConditionalDomainAdversarialLoss,
    CORALLoss,
    DomainAdversarialLoss,
    MultilinearMap,
    MultipleKernelMMD,
)
from transferlab.losses.distillation import HintLoss, KDLoss
from transferlab.losses.domain import GradientReversal, annealed_lr_factor, grl_coefficient, reverse_gradient
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

__all__ = [
    "L2",
    "L2SP",
    "BatchSpectralShrinkage",
    "CORALLoss",
    "ConditionalDomainAdversarialLoss",
    "DomainAdversarialLoss",
    "FeatureMapDistance",
    "GradientReversal",
    "HintLoss",
    "KDLoss",
    "MultilinearMap",
    "MultipleKernelMMD",
    "NoRegularizer",
    "ParameterRegularizer",
    "Regularizer",
    "RegularizerInputs",
    "annealed_lr_factor",
    "grl_coefficient",
    "reverse_gradient",
]
