"""H-score (Bao, Li, Huang, Wang, Zamir & Guibas, ICIP 2019)."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import FEATURES, TransferabilityScore


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H = tr(cov(f)⁺·cov(E[f | y])): how much of the features' variance the class means explain,
    cov(·) the sample covariance (N − 1), ⁺ the pseudo-inverse (rcond 1e-15, as the reference
    library), E[f | y] each image's class mean. Higher is better.

    Shapes: ``features`` (N, D), ``labels`` (N,) in [0, K); returns a float.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    class_means = np.zeros_like(f)
    for k in range(int(y.max()) + 1):
        class_means[y == k] = f[y == k].mean(0)
    cov_f = np.cov(f, rowvar=False)
    cov_g = np.cov(class_means, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g))


class HScore(TransferabilityScore):
    """``h_score`` as a member of the scores' slot (``conf/score/``); reads the candidate's features."""

    reads = FEATURES

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return h_score(x, labels)
