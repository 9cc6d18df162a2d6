"""Deep Embedded Validation (You et al., ICML 2019)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch.nn import functional as F

from transferlab.validators.base import ValidationOutputs, Validator


def dev_risk(weights: np.ndarray, losses: np.ndarray) -> float:
    """DEV's risk: mean(w·ℓ) + η·mean(w) − η, η = −Cov(w·ℓ, w) / Var(w) (the control variate,
    which removes the variance the importance weights add), for per-sample losses ℓ (N,) and
    importance weights w (N,) of the source validation images."""
    weighted = weights * losses
    covariance = np.cov(np.stack([weighted, weights]), ddof=1)[0, 1]
    variance = np.var(weights, ddof=1)
    eta = -covariance / variance if variance > 0 else 0.0
    return float(weighted.mean() + eta * weights.mean() - eta)


class DeepEmbeddedValidation(Validator):
    """−DEV: the source validation loss re-weighted toward the target, negated (higher is better).

    Importance weights w(x) = p(target | f(x)) / p(source | f(x)) · N_s / N_t, from a domain
    classifier on the features; ``dev_risk`` adds the control variate. The classifier here is an
    L2-regularised logistic regression (``C`` picked from a grid by held-out accuracy) trained on
    the two domains' *validation* features with 2-fold cross-fitting, so each source image's
    weight comes from a classifier that did not see it. (The paper and pytorch-adapt train an MLP
    on the source training features and the target's, and weigh the source validation images.)
    """

    def __init__(self, grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0), seed: int = 0) -> None:
        self.grid = tuple(grid)
        self.seed = seed

    def importance_weights(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """w for each source row: cross-fitted p(target)/p(source)·N_s/N_t."""
        features = np.concatenate([source, target])
        scale = features.std(0) + 1e-6
        features = (features - features.mean(0)) / scale
        domain = np.r_[np.ones(len(source)), np.zeros(len(target))]
        folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=self.seed)
        splits = list(folds.split(features, domain))
        best_c = max(self.grid, key=lambda c: self._held_out_accuracy(features, domain, splits, c))
        p_target = np.zeros(len(features))
        for fit, held in splits:
            model = LogisticRegression(C=best_c, max_iter=500).fit(features[fit], domain[fit])
            p_target[held] = model.predict_proba(features[held])[:, 0]  # column 0: label 0, the target
        p_target = np.clip(p_target[: len(source)], 1e-6, 1 - 1e-6)
        return p_target / (1 - p_target) * len(source) / len(target)

    @staticmethod
    def _held_out_accuracy(features: np.ndarray, domain: np.ndarray, splits: list, c: float) -> float:
        hits = 0
        for fit, held in splits:
            model = LogisticRegression(C=c, max_iter=500).fit(features[fit], domain[fit])
            hits += (model.predict(features[held]) == domain[held]).sum()
        return hits / len(domain)

    def score(self, outputs: ValidationOutputs) -> float:
        weights = self.importance_weights(
            outputs.source_features.float().cpu().numpy(), outputs.target_features.float().cpu().numpy()
        )
        losses = F.cross_entropy(outputs.source_logits.float(), outputs.source_labels, reduction="none")
        return -dev_risk(weights, losses.cpu().numpy())
