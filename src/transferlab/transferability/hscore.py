"""H-score (Bao, Li, Huang, Wang, Zamir & Guibas, ICIP 2019), and its shrunk form (Ibrahim, Ponomareva
& Mazumder, "Newer is not always better", 2022; the reference library's ``regularized_h_score``)."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import FEATURES, TransferabilityScore


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: bool = True) -> float:
    """How much of the features' variance the class means explain. Higher is better.

    Plain (``shrinkage=False``): H = tr(cov(f)⁺·cov(E[f | y])), cov(·) the sample covariance
    (N − 1), ⁺ the pseudo-inverse (rcond 1e-15, as the reference library), E[f | y] each image's
    class mean. It reaches K − 1 whenever N ≤ D (cov(f)⁺ then whitens any features perfectly on the
    sample), so it ranks wide candidates above narrow ones whatever they hold.

    Shrunk (the default): H_α = tr(cov_α(f)⁻¹·(1 − α)·cov(E[f | y])), cov_α the Ledoit–Wolf
    estimate of the features' covariance (``sklearn.covariance.LedoitWolf``, its 1/N scaling) and
    α ∈ [0, 1] its shrinkage toward a scaled identity: well conditioned at any width, so a wide
    uninformative candidate scores near 0 (the reference library's regularized H-score).

    Shapes: ``features`` (N, D), ``labels`` (N,) in [0, K); returns a float.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    f = f - f.mean(0, keepdims=True)
    class_means = np.zeros_like(f)
    for k in np.unique(y):
        class_means[y == k] = f[y == k].mean(0)
    cov_g = np.cov(class_means, rowvar=False)
    if not shrinkage:
        return float(np.trace(np.linalg.pinv(np.cov(f, rowvar=False), rcond=1e-15) @ cov_g))
    from sklearn.covariance import LedoitWolf

    estimate = LedoitWolf(assume_centered=False).fit(f)
    alpha = float(estimate.shrinkage_)
    return float(np.trace(np.linalg.pinv(estimate.covariance_, rcond=1e-15) @ ((1.0 - alpha) * cov_g)))


class HScore(TransferabilityScore):
    """``h_score`` as a member of the scores' slot (``conf/score/``); reads the candidate's features.
    ``shrinkage``: the Ledoit–Wolf form (default), so candidates of any width compare."""

    reads = FEATURES

    def __init__(self, shrinkage: bool = True) -> None:
        self.shrinkage = shrinkage

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return h_score(x, labels, self.shrinkage)
