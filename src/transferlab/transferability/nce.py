"""NCE (Tran, Nguyen & Hassner, ICCV 2019): the negative conditional entropy of the target labels
given the source model's hard predictions."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import PREDICTIONS, TransferabilityScore


def nce(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """−H(Y | Z) = Σ_z P̂(z)·Σ_y P̂(y | z)·log P̂(y | z), Z = argmax of the source model's
    prediction over its classes, P̂ the empirical joint of (Y, Z) over the N target images
    (classes z never predicted are left out; 1e-20 guards the logarithm, as the authors').
    Higher is better (0: the source's class determines the target's).

    Shapes: ``probabilities`` (N, C_s) (its argmax is Z), ``labels`` (N,) in [0, C_t); returns a float.
    """
    z = np.asarray(probabilities).argmax(1)
    y = np.asarray(labels).reshape(-1)
    n = len(y)
    joint = np.zeros((int(y.max()) + 1, np.asarray(probabilities).shape[1]))
    np.add.at(joint, (y, z), 1.0 / n)
    p_z = joint.sum(0)
    seen = p_z > 0
    conditional = joint[:, seen] / p_z[seen] + 1e-20  # P̂(y | z) for the predicted z
    entropy_given_z = -(conditional * np.log(conditional)).sum(0)
    return float(-(entropy_given_z * p_z[seen]).sum())


class NCE(TransferabilityScore):
    """``nce`` as a member of the scores' slot (``conf/score/``); reads the candidate's predictions."""

    reads = PREDICTIONS

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return nce(x, labels)
