"""The transferability scores against their definitions and against values from the authors' code
(thuml/LogME for LogME, LEEP and NCE; the Transfer-Learning-Library for H-score and TransRate),
computed once on the fixed data below and written here to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest

from transferlab.transferability.base import load_scores
from transferlab.transferability.hscore import h_score
from transferlab.transferability.leep import leep
from transferlab.transferability.logme import logme
from transferlab.transferability.nce import nce
from transferlab.transferability.transrate import coding_rate, transrate

SCORES = load_scores("all", "scores")  # every member of conf/score/


def fixed_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    features = rng.standard_normal((60, 8)) + 0.8 * np.eye(4, 8)[labels]
    logits = rng.standard_normal((60, 5)) + 1.5 * np.eye(4, 5)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y3 = np.repeat(np.arange(3), 10)
    wide = rng.standard_normal((30, 50)) + np.eye(3, 50)[y3]
    return {"labels": labels, "features": features, "probabilities": probabilities, "wide": wide, "y3": y3}


# the authors' functions on fixed_data() (their code run once outside this project)
AUTHORS = {
    "logme": -0.6719670416675194,
    "logme_wide": 1.1713815778338967,  # D > N: the authors' other branch, the same evidence
    "leep": -1.1449035178803575,
    "nce": -0.9439804558390203,
    "hscore": 0.9745033727075596,
    "transrate": 1.3679603354000491,
}


def test_every_score_equals_the_authors_code_on_fixed_data():
    d = fixed_data()
    assert logme(d["features"], d["labels"]) == pytest.approx(AUTHORS["logme"], abs=1e-6)
    assert logme(d["wide"], d["y3"]) == pytest.approx(AUTHORS["logme_wide"], abs=1e-6)
    assert leep(d["probabilities"], d["labels"]) == pytest.approx(AUTHORS["leep"], abs=1e-6)
    assert nce(d["probabilities"], d["labels"]) == pytest.approx(AUTHORS["nce"], abs=1e-6)
    assert h_score(d["features"], d["labels"]) == pytest.approx(AUTHORS["hscore"], abs=1e-6)
    assert transrate(d["features"], d["labels"]) == pytest.approx(AUTHORS["transrate"], abs=1e-6)


def test_leep_is_the_mean_log_of_the_expected_empirical_prediction_written_out():
    d = fixed_data()
    theta, y = d["probabilities"], d["labels"]
    n, total = len(y), 0.0
    for i in range(n):
        inner = 0.0
        for z in range(theta.shape[1]):
            joint_yz = sum(theta[j, z] for j in range(n) if y[j] == y[i]) / n
            marginal_z = theta[:, z].sum() / n
            inner += joint_yz / marginal_z * theta[i, z]
        total += np.log(inner)
    assert leep(theta, y) == pytest.approx(total / n, abs=1e-12)


def test_nce_is_zero_when_the_source_class_determines_the_target_class_and_log_k_when_it_says_nothing():
    y = np.repeat(np.arange(3), 4)
    determined = np.eye(5)[y + 1]  # target class k always predicted as source class k + 1
    assert nce(determined, y) == pytest.approx(0.0, abs=1e-12)
    constant = np.tile(np.eye(5)[2], (12, 1))  # every image predicted as source class 2
    assert nce(constant, y) == pytest.approx(-np.log(3), abs=1e-12)


def test_h_score_is_the_trace_of_the_inverse_feature_covariance_times_the_class_mean_covariance():
    d = fixed_data()
    f, y = d["features"], d["labels"]
    centred = f - f.mean(0)
    means = np.stack([f[y == k].mean(0) for k in y])
    centred_means = means - means.mean(0)
    expected = np.trace(np.linalg.inv(centred.T @ centred) @ (centred_means.T @ centred_means))
    assert h_score(f, y) == pytest.approx(expected, rel=1e-9)


def test_transrate_is_the_coding_rate_of_all_features_minus_the_mean_within_a_class():
    d = fixed_data()
    f, y = d["features"] - d["features"].mean(0), d["labels"]
    rate = lambda x: 0.5 * np.log(np.linalg.det(np.eye(8) + x.T @ x / (len(x) * 1e-4)))  # noqa: E731
    expected = rate(f) - np.mean([rate(f[y == k]) for k in range(4)])
    assert transrate(d["features"], y) == pytest.approx(expected, rel=1e-9)
    assert coding_rate(np.zeros((5, 3))) == 0.0


def test_logme_evidence_at_its_fixed_point_equals_the_gaussian_marginal_likelihood():
    """At the α, β the iteration converges to, the closed form equals log N(y; 0, α⁻¹FFᵀ + β⁻¹I) / N,
    computed directly from the covariance (one class, iterated to convergence)."""
    d = fixed_data()
    f, y = d["features"], (d["labels"] == 0).astype(float)
    binary = (d["labels"] == 0).astype(int)
    # two classes 0/1: the mean over one-vs-rest targets; class 1's target is 1 − y
    value = logme(f, binary, max_iterations=1000, tolerance=1e-12)
    u, s, _ = np.linalg.svd(f, full_matrices=False)

    def evidence(target: np.ndarray) -> float:
        alpha, beta = 1.0, 1.0
        sigma, x2 = s**2, (u.T @ target) ** 2
        for _ in range(1000):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + target @ target - x2.sum()
            alpha, beta = gamma / (m2 + 1e-5), (len(target) - gamma) / (res2 + 1e-5)
        cov = f @ f.T / alpha + np.eye(len(target)) / beta
        _, logdet = np.linalg.slogdet(cov)
        quad = target @ np.linalg.solve(cov, target)
        return (-0.5 * logdet - 0.5 * quad - len(target) / 2 * np.log(2 * np.pi)) / len(target)

    assert value == pytest.approx((evidence(1 - y) + evidence(y)) / 2, abs=1e-4)


def test_the_scores_prefer_features_that_separate_the_classes():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 40)
    noise = rng.standard_normal((120, 6))
    separating = noise + 3.0 * np.eye(3, 6)[y]
    for name in ("logme", "hscore", "transrate"):
        assert SCORES[name](separating, y) > SCORES[name](noise, y), name
    sharp = np.eye(3)[y] * 0.9 + 0.05
    for name in ("leep", "nce"):
        assert SCORES[name](sharp, y) > SCORES[name](np.full((120, 3), 1 / 3), y), name
