"""A protocol's settings by class (``protocol.method_settings``): merged into the method and into
each loss of that class, never over a key the command line set."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferlab.utils.config import apply_protocol, compose_config


def composed(tmp_path: Path, *overrides: str, given: tuple[str, ...] = ()):
    cfg = compose_config(list(overrides), tmp_path / "run")
    apply_protocol(cfg, given)
    return cfg


def test_the_cdan_protocol_sets_its_authors_methods_and_leaves_the_others(tmp_path):
    dann = composed(tmp_path, "experiment=mnist_usps_cdan_protocol", "method=dann").method
    assert (dann.discriminator_hidden, dann.warmup, dann.warmup_from) == (500, pytest.approx(1.0672), "run")
    mdd = composed(tmp_path, "experiment=mnist_usps_cdan_protocol", "method=mdd").method
    assert (mdd.warmup, mdd.warmup_from) == (pytest.approx(0.2), "run")  # MDD's own, its authors'
    assert "discriminator_hidden" not in mdd


def test_a_key_the_command_line_sets_keeps_its_value(tmp_path):
    cfg = composed(
        tmp_path,
        "experiment=mnist_usps_cdan_protocol",
        "method=dann",
        "method.discriminator_hidden=64",
        given=("method.discriminator_hidden",),
    )
    assert cfg.method.discriminator_hidden == 64 and cfg.method.warmup == pytest.approx(1.0672)


def test_an_experiment_sets_a_loss_of_that_class_as_its_authors_tuned_it_for_the_pair(tmp_path):
    assert composed(tmp_path, "experiment=offline_distill", "distill=dkd").method.losses.dkd.beta == 2.0
    assert composed(tmp_path, "experiment=mnist_distill", "distill=dkd").method.losses.dkd.beta == 8.0
    mine = composed(
        tmp_path,
        "experiment=offline_distill",
        "distill=dkd",
        "method.losses.dkd.beta=5",
        given=("method.losses.dkd.beta",),
    )
    assert mine.method.losses.dkd.beta == 5
    kd = composed(tmp_path, "experiment=offline_distill").method.losses
    assert list(kd) == ["kd"] and "beta" not in kd.kd  # no DKD, nothing merged
