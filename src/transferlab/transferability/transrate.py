"""TransRate (Huang, Huang, Tan, Li & Li, ICML 2022)."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import FEATURES, TransferabilityScore
from transferlab.utils.errors import ConfigError

CLASS_WEIGHTS = ("frequency", "uniform")


def coding_rate(features: np.ndarray, eps: float = 1e-4) -> float:
    """R(f, ε) = ½·log det(I + fᵀf / (N·ε)) of (N, D) features."""
    n, d = features.shape
    _, logdet = np.linalg.slogdet(np.eye(d) + features.T @ features / (n * eps))
    return 0.5 * logdet


def principal_components(features: np.ndarray, dim: int) -> np.ndarray:
    """The (N, D) centred features on their ``dim`` leading principal directions, (N, dim); as they
    are when D ≤ dim."""
    if features.shape[1] <= dim:
        return features
    _, _, vt = np.linalg.svd(features, full_matrices=False)
    return features @ vt[:dim].T


def transrate(
    features: np.ndarray,
    labels: np.ndarray,
    eps: float = 1e-4,
    dim: int | None = 32,
    class_weights: str = "frequency",
) -> float:
    """TrR = R(f, ε) − Σ_k w_k·R(f_k, ε) on the centred features, f_k those of class k: the coding
    rate of all the features minus the coding rate within a class. Higher is better.

    ``class_weights``: ``frequency``, w_k = N_k/N, the authors' definition (their paper's
    R(Z, ε | Y)), or ``uniform``, w_k = 1/K, the reference library's code (equal when the classes
    are balanced). ``dim``: the features are first put on their ``dim`` leading principal
    directions, a dimension common to every candidate: the coding rate of N samples grows with the
    width up to N, so without it a wide candidate outscores a narrow one whatever it holds (1,024-d
    noise on 500 images: 1,614 against 13 for 64-d features with class structure). Keep ``dim``
    below the smallest class's count; None: no projection (the reference library's form).

    Shapes: ``features`` (N, D), ``labels`` (N,) in [0, K); returns a float.
    """
    if class_weights not in CLASS_WEIGHTS:
        raise ConfigError(f"class_weights={class_weights!r}; use one of {', '.join(CLASS_WEIGHTS)}")
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    f = f - f.mean(0, keepdims=True)
    if dim is not None:
        f = principal_components(f, dim)
    classes = np.unique(y)
    weights = {k: (y == k).mean() if class_weights == "frequency" else 1.0 / len(classes) for k in classes}
    within = sum(weights[k] * coding_rate(f[y == k], eps) for k in classes)
    return float(coding_rate(f, eps) - within)


class TransRate(TransferabilityScore):
    """``transrate`` as a member of the scores' slot (``conf/score/``); reads the candidate's features."""

    reads = FEATURES

    def __init__(self, eps: float = 1e-4, dim: int | None = 32, class_weights: str = "frequency") -> None:
        self.eps, self.dim, self.class_weights = eps, dim, class_weights

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return transrate(x, labels, self.eps, self.dim, self.class_weights)
