"""Validators against their formulas, written out here in plain loops, and against what they must
tell apart (a confident and diverse model from a collapsed or a confused one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from transferlab.validators.base import ValidationOutputs
from transferlab.validators.bnm import BatchNuclearNorm
from transferlab.validators.dev import DeepEmbeddedValidation, dev_risk
from transferlab.validators.entropy import Entropy
from transferlab.validators.im import InformationMaximization
from transferlab.validators.oracle import Oracle
from transferlab.validators.snd import SoftNeighborhoodDensity
from transferlab.validators.source_acc import SourceAccuracy
from transferlab.validators.source_loss import SourceLoss


def outputs(seed: int = 0, n_s: int = 12, n_t: int = 10, k: int = 4, d: int = 6) -> ValidationOutputs:
    g = torch.Generator().manual_seed(seed)
    return ValidationOutputs(
        source_logits=torch.randn(n_s, k, generator=g),
        source_features=torch.randn(n_s, d, generator=g),
        source_labels=torch.randint(0, k, (n_s,), generator=g),
        target_logits=torch.randn(n_t, k, generator=g) * 2,
        target_features=torch.randn(n_t, d, generator=g) + 0.5,
        target_labels=torch.randint(0, k, (n_t,), generator=g),
    )


def h(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def softmax_rows(logits: torch.Tensor) -> list[list[float]]:
    rows = []
    for row in logits.tolist():
        exps = [math.exp(v - max(row)) for v in row]
        rows.append([e / sum(exps) for e in exps])
    return rows


def test_source_accuracy_and_loss_are_the_source_validation_accuracy_and_negated_cross_entropy():
    o = outputs()
    hits = sum(
        int(max(range(4), key=lambda c, r=r: r[c]) == y)
        for r, y in zip(o.source_logits.tolist(), o.source_labels.tolist(), strict=True)
    )
    assert SourceAccuracy().score(o) == pytest.approx(hits / 12)
    p = softmax_rows(o.source_logits)
    ce = -sum(math.log(p[i][y]) for i, y in enumerate(o.source_labels.tolist())) / 12
    assert SourceLoss().score(o) == pytest.approx(-ce, rel=1e-5)


def test_entropy_im_and_bnm_match_their_formulas():
    o = outputs()
    p = softmax_rows(o.target_logits)
    mean_h = sum(h(row) for row in p) / len(p)
    assert Entropy().score(o) == pytest.approx(-mean_h, rel=1e-5)
    marginal = [sum(row[k] for row in p) / len(p) for k in range(4)]
    assert InformationMaximization().score(o) == pytest.approx(h(marginal) - mean_h, rel=1e-5)
    singular = np.linalg.svd(np.array(p), compute_uv=False)
    assert BatchNuclearNorm().score(o) == pytest.approx(singular.sum() / len(p), rel=1e-5)


def test_prediction_validators_prefer_confident_diverse_predictions_to_collapse_or_confusion():
    eye = torch.eye(4).repeat(3, 1) * 10  # 12 confident predictions, 3 per class
    collapsed = torch.zeros(12, 4)
    collapsed[:, 0] = 10  # confident, but one class for every image
    confused = torch.zeros(12, 4)  # uniform predictions
    base = outputs(n_t=12)

    def with_target(logits):
        return ValidationOutputs(**{**base.__dict__, "target_logits": logits})

    good, bad, flat = with_target(eye), with_target(collapsed), with_target(confused)
    assert Entropy().score(good) > Entropy().score(flat)  # entropy cannot see collapse ...
    assert Entropy().score(bad) == pytest.approx(Entropy().score(good), abs=1e-3)
    for validator in (InformationMaximization(), BatchNuclearNorm()):  # ... IM and BNM can
        assert validator.score(good) > validator.score(bad) and validator.score(good) > validator.score(flat)
    assert InformationMaximization().score(good) == pytest.approx(math.log(4), abs=5e-3)
    assert BatchNuclearNorm().score(good) == pytest.approx(2 / math.sqrt(12), rel=1e-3)  # 4 σ of √3, /12


def test_snd_is_the_mean_entropy_of_each_images_softened_similarities_to_the_others():
    o = outputs(n_t=6)
    p = softmax_rows(o.target_logits)
    unit = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in p]
    total = 0.0
    for i in range(6):
        sims = [sum(a * b for a, b in zip(unit[i], unit[j], strict=True)) / 0.05 for j in range(6) if j != i]
        exps = [math.exp(s - max(sims)) for s in sims]
        total += h([e / sum(exps) for e in exps])
    assert SoftNeighborhoodDensity().score(o) == pytest.approx(total / 6, rel=1e-5)


def test_snd_states_and_applies_its_cap_on_target_images(caplog):
    o = outputs(n_t=50)
    capped = SoftNeighborhoodDensity(max_images=20)
    first = ValidationOutputs(**{**o.__dict__, "target_logits": o.target_logits[:20]})
    with caplog.at_level("INFO", logger="transferlab"):
        assert capped.score(o) == pytest.approx(SoftNeighborhoodDensity().score(first))
        capped.score(o)
    lines = [r.getMessage() for r in caplog.records if "SND" in r.getMessage()]
    assert lines == ["SND: 50 target validation images, scored on the first 20 (max_images)"]


def test_dev_risk_adds_the_control_variate_to_the_weighted_loss():
    w = np.array([0.5, 1.0, 2.0, 1.5])
    loss = np.array([1.0, 0.2, 0.4, 3.0])
    wl = w * loss
    cov = sum((a - wl.mean()) * (b - w.mean()) for a, b in zip(wl, w, strict=True)) / 3
    var = sum((b - w.mean()) ** 2 for b in w) / 3
    eta = -cov / var
    assert dev_risk(w, loss) == pytest.approx(wl.mean() + eta * w.mean() - eta)
    # weights of exactly 1 (no shift): the control variate vanishes, DEV is the plain mean loss
    assert dev_risk(np.ones(4), loss) == pytest.approx(loss.mean())


def test_dev_weights_up_the_source_images_that_look_like_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(0, 1, (200, 2))
    target = rng.normal(0, 1, (200, 2)) + np.array([1.5, 0.0])
    weights = DeepEmbeddedValidation().importance_weights(source, target)
    near_target = source[:, 0] > 1.0
    assert weights[near_target].mean() > 3 * weights[source[:, 0] < -1.0].mean()
    assert weights.mean() == pytest.approx(1.0, abs=0.5)  # E_s[p_t/p_s] = 1 for a calibrated classifier


def test_dev_ranks_a_model_by_its_loss_on_the_target_like_source_images():
    o = outputs(n_s=80, n_t=80)
    source = o.source_features.clone()
    target = o.target_features.clone()
    target[:, 0] += 3  # the target sits where source feature 0 is large
    looks_like_target = source[:, 0] > source[:, 0].median()
    good_there = torch.where(
        looks_like_target[:, None], 5 * torch.nn.functional.one_hot(o.source_labels, 4), 0
    )
    bad_there = torch.where(
        looks_like_target[:, None], -5 * torch.nn.functional.one_hot(o.source_labels, 4), 0
    )
    base = {**o.__dict__, "source_features": source, "target_features": target}
    a = ValidationOutputs(**{**base, "source_logits": good_there.float()})
    b = ValidationOutputs(**{**base, "source_logits": bad_there.float()})
    assert DeepEmbeddedValidation().score(a) > DeepEmbeddedValidation().score(b)


def test_only_the_oracle_reads_target_labels():
    o = outputs()
    assert Oracle.uses_target_labels and not any(
        v.uses_target_labels
        for v in (SourceAccuracy(), SourceLoss(), Entropy(), InformationMaximization(), BatchNuclearNorm())
    )
    hits = (o.target_logits.argmax(1) == o.target_labels).float().mean().item()
    assert Oracle().score(o) == pytest.approx(hits)
    with pytest.raises(ValueError, match="needs the target's validation labels"):
        Oracle().score(o.without_target_labels())


def test_dev_importance_weights_average_one_over_the_source_when_the_domains_agree():
    """w(x) = p(target | x)/p(source | x)·N_s/N_t (You et al.'s density ratio): with both domains
    drawn from one distribution and four source images per target image, the classifier's odds are
    about N_t/N_s, and only the N_s/N_t factor brings the weights back to 1 on average."""
    rng = np.random.default_rng(0)
    source, target = rng.standard_normal((400, 5)), rng.standard_normal((100, 5))
    weights = DeepEmbeddedValidation().importance_weights(source, target)
    assert weights.mean() == pytest.approx(1.0, abs=0.1)
