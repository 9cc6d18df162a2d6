"""The transferability scores against their definitions and against values from the authors' code
(thuml/LogME for LogME, LEEP and NCE; the Transfer-Learning-Library for H-score and TransRate),
computed once on the fixed data below and written here to 1e-6; and candidates of any width: a wide
candidate with no label information must not outscore a narrow one with class structure."""

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
    # D > N: thuml/LogME's _fit_fixed_point before its PR #24 gave 1.1713815778338967, the evidence
    # inflated by (D − N)/(2N)·log α; the exact value is checked against the Gaussian marginal below
    "leep": -1.1449035178803575,
    "nce": -0.9439804558390203,
    "hscore": 0.9745033727075596,
    "transrate": 1.3679603354000491,
}


def test_every_score_equals_the_authors_code_on_fixed_data():
    d = fixed_data()
    assert logme(d["features"], d["labels"]) == pytest.approx(AUTHORS["logme"], abs=1e-6)
    assert leep(d["probabilities"], d["labels"]) == pytest.approx(AUTHORS["leep"], abs=1e-6)
    assert nce(d["probabilities"], d["labels"]) == pytest.approx(AUTHORS["nce"], abs=1e-6)
    # the plain H-score, and TransRate as the reference library's code computes it (1/K, no projection)
    assert h_score(d["features"], d["labels"], shrinkage=False) == pytest.approx(AUTHORS["hscore"], abs=1e-6)
    plain = transrate(d["features"], d["labels"], dim=None, class_weights="uniform")
    assert plain == pytest.approx(AUTHORS["transrate"], abs=1e-6)


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
    assert h_score(f, y, shrinkage=False) == pytest.approx(expected, rel=1e-9)


def test_transrate_is_the_coding_rate_of_all_features_minus_the_mean_within_a_class():
    d = fixed_data()
    f, y = d["features"] - d["features"].mean(0), d["labels"]
    rate = lambda x: 0.5 * np.log(np.linalg.det(np.eye(8) + x.T @ x / (len(x) * 1e-4)))  # noqa: E731
    expected = rate(f) - np.mean([rate(f[y == k]) for k in range(4)])
    assert transrate(d["features"], y) == pytest.approx(expected, rel=1e-9)
    assert coding_rate(np.zeros((5, 3))) == 0.0


@pytest.mark.parametrize("shape", ["narrow", "wide"])
def test_logme_evidence_at_its_fixed_point_equals_the_gaussian_marginal_likelihood(shape):
    """At the α, β the iteration converges to, the closed form equals log N(y; 0, α⁻¹FFᵀ + β⁻¹I) / N,
    computed directly from the covariance (one class, iterated to convergence): for N > D and for
    N < D, where the D − N zero singular values count too."""
    d = fixed_data()
    f, labels = (d["features"], d["labels"]) if shape == "narrow" else (d["wide"], d["y3"])
    y = (labels == 0).astype(float)
    binary = (labels == 0).astype(int)
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


def test_logme_of_a_wide_candidate_is_not_inflated_by_its_width():
    """The fixed point's evidence before thuml/LogME's PR #24 (only min(N, D) terms of the log-det)
    exceeds the exact one by (D − N)/(2N)·log α, positive for the α of these features."""
    d = fixed_data()
    value = logme(d["wide"], d["y3"])
    assert value < 1.1713815778338967 - 0.1  # the uncorrected code's value on the same data


def width_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """500 images of 5 classes: 1,024-d rectified noise (no label information) and 64-d rectified
    features with class structure (the issue's pair)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 100)
    noise = np.maximum(rng.standard_normal((500, 1024)), 0)
    structured = np.maximum(rng.standard_normal((500, 64)) + 1.5 * np.eye(5, 64)[y], 0)
    return noise, structured, y


def test_no_feature_score_prefers_wide_noise_to_narrow_class_structure():
    noise, structured, y = width_pair()
    for name in ("logme", "hscore", "transrate"):
        assert SCORES[name](structured, y) > SCORES[name](noise, y), name
    # the forms that do: the plain H-score whitens anything at N ≤ D (K − 1 = 4), and the coding
    # rate of N samples grows with the width
    assert h_score(noise, y, shrinkage=False) == pytest.approx(4.0, abs=1e-6)
    assert h_score(noise, y, shrinkage=False) > h_score(structured, y, shrinkage=False)
    assert transrate(noise, y, dim=None) > 100 * transrate(structured, y, dim=None)


def test_shrunk_h_score_is_the_ledoit_wolf_formula_written_out():
    """H_α = tr(Σ_α⁻¹·(1 − α)·cov(E[f | y])), Σ_α = (1 − α)·S + α·(tr S / D)·I with S the 1/N
    covariance and Ledoit and Wolf's α = min(b̄², d²)/d² (their lemma), written here from the paper."""
    d = fixed_data()
    f, y = d["features"] - d["features"].mean(0), d["labels"]
    n, dim = f.shape
    s = f.T @ f / n
    mu = np.trace(s) / dim
    d2 = np.sum((s - mu * np.eye(dim)) ** 2) / dim
    b2 = sum(np.sum((np.outer(x, x) - s) ** 2) for x in f) / n**2 / dim
    alpha = min(b2, d2) / d2
    shrunk = (1 - alpha) * s + alpha * mu * np.eye(dim)
    means = np.stack([f[y == k].mean(0) for k in y])
    expected = np.trace(np.linalg.inv(shrunk) @ ((1 - alpha) * np.cov(means, rowvar=False)))
    assert h_score(d["features"], y) == pytest.approx(expected, rel=1e-9)
    assert 0 < alpha < 1


def test_transrate_weighs_each_class_by_its_share_of_the_images():
    """R(f) − Σ_k (N_k/N)·R(f_k) as the authors define it; 1/K (the reference library's code) only
    as an option, different when the classes are not balanced."""
    rng = np.random.default_rng(3)
    y = np.array([0] * 30 + [1] * 10 + [2] * 5)
    f = rng.standard_normal((45, 6)) + 2.0 * np.eye(3, 6)[y]
    c = f - f.mean(0)
    expected = coding_rate(c) - sum((y == k).mean() * coding_rate(c[y == k]) for k in range(3))
    assert transrate(f, y) == pytest.approx(expected, rel=1e-12)
    uniform = coding_rate(c) - sum(coding_rate(c[y == k]) for k in range(3)) / 3
    assert transrate(f, y, class_weights="uniform") == pytest.approx(uniform, rel=1e-12)
    assert abs(expected - uniform) > 0.1


def test_transrate_compares_candidates_on_a_common_dimension():
    """The features go on their ``dim`` leading principal directions first: rotating them changes
    nothing, and a candidate as wide as ``dim`` is not projected."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(4), 40)
    f = rng.standard_normal((160, 48)) + np.eye(4, 48)[y]
    rotation, _ = np.linalg.qr(rng.standard_normal((48, 48)))
    assert transrate(f @ rotation, y, dim=8) == pytest.approx(transrate(f, y, dim=8), rel=1e-8)
    assert transrate(f[:, :8], y, dim=8) == pytest.approx(transrate(f[:, :8], y, dim=None), rel=1e-12)
    assert transrate(f, y, dim=8) != pytest.approx(transrate(f, y, dim=None), rel=1e-3)
