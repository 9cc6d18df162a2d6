"""Batch Spectral Shrinkage."""

from __future__ import annotations

import torch

from transferlab.losses.regularizers.base import Regularizer, RegularizerInputs
from transferlab.losses.slot import FEATURES


class BatchSpectralShrinkage(Regularizer):
    """BSS (Chen et al., 2019): R = Σ_{i=1..k} σ_{-i}², the k smallest squared singular values of
    the batch's feature matrix F (N, D).

    Fine-tuning on few labels lets the spectral components with small singular values, which
    carry what the source knew but the target cannot confirm, grow untransferable; BSS shrinks
    them. σ are the singular values of F (min(N, D) of them, in decreasing order); the gradient
    flows into F through the SVD. Shapes: ``inputs.features`` (N, D) -> 0-d tensor. Example::

        >>> F = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
        >>> BatchSpectralShrinkage(k=2)(RegularizerInputs([], [], features=F))  # 1² + 2² = 5
    """

    needs = frozenset({FEATURES})

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"BSS: k={k} must be >= 1 (the number of smallest singular values)")
        self.k = k

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        if inputs.features is None:
            raise ValueError("BSS needs the batch's features")
        singular = torch.linalg.svdvals(inputs.features.float())  # decreasing
        return singular[-min(self.k, singular.numel()) :].pow(2).sum()
