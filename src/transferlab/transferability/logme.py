"""LogME (You, Liu, Wang & Long, ICML 2021): the log marginal evidence of a Bayesian linear
model of the labels on the features."""

from __future__ import annotations

import numpy as np

from transferlab.transferability.base import FEATURES, TransferabilityScore


def logme(
    features: np.ndarray, labels: np.ndarray, max_iterations: int = 11, tolerance: float = 1e-3
) -> float:
    """(1/K)·Σ_k L_k / N, L_k the maximised log evidence of the one-vs-rest target y_k = [y = k]
    under y_k = F·w + ε, w ~ N(0, α⁻¹I), ε ~ N(0, β⁻¹I):

        L = D/2·log α + N/2·log β − ½·Σ_i log(α + β·σ_i²) − β/2·‖y − F·m‖² − α/2·‖m‖² − N/2·log 2π,

    σ_i, i = 1..D, the singular values of F (N, D) — D of them: when N < D the D − rank(F) beyond
    the rank are 0 and each adds log α to the sum (thuml/LogME's ``_fit_fixed_point`` sums only the
    min(N, D) it computes, which adds (D − N)/2·log α to the evidence of a wide candidate; fixed
    upstream in its PR #24, and TLlib's version has it right), m the posterior mean, α and β found
    by the fixed-point iteration of the authors' ``_fit_fixed_point`` (thuml/LogME): with x = Uᵀy and t = α/β,
    γ = Σ σ²/(σ² + t), ‖m‖² = Σ σ²x²/(t + σ²)², ‖y − Fm‖² = Σ x²/(1 + σ²/t)² + (‖y‖² − ‖x‖²),
    α = γ/(‖m‖² + 1e-5), β = (N − γ)/(‖y − Fm‖² + 1e-5), until t moves by at most ``tolerance``
    relatively (at most ``max_iterations`` steps). Higher is better.

    Shapes: ``features`` (N, D), ``labels`` (N,) in [0, K); returns a float.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels).reshape(-1)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = (s**2).reshape(-1, 1)
    evidences = []
    for k in range(int(y.max()) + 1):
        target = (y == k).astype(np.float64).reshape(-1, 1)
        x = u.T @ target
        x2 = x**2
        residual_outside = (target**2).sum() - x2.sum()  # the part of y outside F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(max_iterations):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + residual_outside
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= tolerance:
                break
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * (np.sum(np.log(alpha + beta * sigma)) + (d - sigma.size) * np.log(alpha))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


class LogME(TransferabilityScore):
    """``logme`` as a member of the scores' slot (``conf/score/``); reads the candidate's features."""

    reads = FEATURES

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        return logme(x, labels)
