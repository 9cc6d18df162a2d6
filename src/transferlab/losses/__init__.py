"""Losses and regularizers, each an nn.Module whose docstring states its formula."""

from transferlab.losses.distillation import HintLoss, KDLoss
from transferlab.losses.regularizers import L2, L2SP, NoRegularizer, ParameterRegularizer

__all__ = ["L2", "L2SP", "HintLoss", "KDLoss", "NoRegularizer", "ParameterRegularizer"]
