"""TransRate (Huang, Huang, Tan, Li & Li, ICML 2022)."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import FEATURES, TransferabilityScore


def coding_rate(features: np.ndarray, eps: float = 1e-4) -> float:
    """R(f, ε) = ½·log det(I + fᵀf / (N·ε)) of (N, D) features."""
    n, d = features.shape
    _, logdet = np.linalg.slogdet(np.eye(d) + features.T @ features / (n * eps))
    return 0.5 * logdet


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = 1e-4) -> float:
    """TrR = R(f, ε) − (1/K)·Σ_k R(f_k, ε) on the centred features, f_k those of class k: the
    coding rate of all the features minus the mean coding rate within a class (the reference
    library's form). Higher is better.

    Shapes: ``features`` (N, D), ``labels`` (N,) in [0, K); returns a float.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    f = f - f.mean(0, keepdims=True)
    classes = int(y.max()) + 1
    within = sum(coding_rate(f[y == k], eps) for k in range(classes))
    return float(coding_rate(f, eps) - within / classes)


class TransRate(TransferabilityScore):
    """``transrate`` as a member of the scores' slot (``conf/score/``); reads the candidate's features."""

    reads = FEATURES

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return transrate(x, labels)
