"""LEEP (Nguyen, Hassner, Seeger & Archambeau, ICML 2020): the log expected empirical prediction."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import PREDICTIONS, TransferabilityScore


def leep(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """(1/N)·Σ_i log Σ_z P̂(y_i | z)·θ(x_i)_z, with θ(x) the source model's predicted distribution
    over its own classes z (N, C_s), P̂(y, z) = (1/N)·Σ_{i: y_i = y} θ(x_i)_z the empirical joint
    and P̂(y | z) = P̂(y, z) / Σ_y' P̂(y', z). Higher is better (0 at best).

    Shapes: ``probabilities`` (N, C_s) rows summing to 1, ``labels`` (N,) in [0, C_t); returns a float.
    """
    theta = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    n = theta.shape[0]
    joint = np.stack([theta[y == k].sum(0) / n for k in range(int(y.max()) + 1)])  # (C_t, C_s)
    conditional = joint / joint.sum(0, keepdims=True)  # P̂(y | z)
    expected = theta @ conditional.T  # (N, C_t)
    return float(np.mean(np.log(expected[np.arange(n), y])))


class LEEP(TransferabilityScore):
    """``leep`` as a member of the scores' slot (``conf/score/``); reads the candidate's predictions."""

    reads = PREDICTIONS

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return leep(x, labels)
