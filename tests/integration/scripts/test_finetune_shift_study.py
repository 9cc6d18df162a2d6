"""scripts/finetune_shift_study.py: the table it writes from its runs' metrics."""

from __future__ import annotations

import pytest

from conftest import load_script


def test_a_row_is_the_mean_and_spread_of_id_each_shift_and_their_mean(monkeypatch):
    study = load_script("finetune_shift_study", monkeypatch)
    shifts = {f"test/shift_{k}_acc": v for k, v in zip(study.SHIFTS, (0.5, 0.4, 0.3), strict=True)}
    other = {f"test/shift_{k}_acc": v for k, v in zip(study.SHIFTS, (0.7, 0.6, 0.5), strict=True)}
    row = study.row("lp_ft", {0: {"test/acc": 0.8, **shifts}, 1: {"test/acc": 0.9, **other}})
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["lp_ft", "2", "85.0 ± 7.1"]
    assert cells[3:6] == ["60.0 ± 14.1", "50.0 ± 14.1", "40.0 ± 14.1"]
    assert cells[6] == "50.0 ± 14.1"  # OOD: per seed the mean of the shifts (40, 60), then over seeds
    assert cells[7] == "80.0/40.0, 90.0/60.0"


def test_every_arm_is_a_fine_tuning_experiment_with_the_shift_preset(tmp_path, monkeypatch):
    from conftest import compose_config

    study = load_script("finetune_shift_study", monkeypatch)
    for arm, overrides in study.ARMS.items():
        cfg = compose_config([*overrides, "+shifts=cifar10c_families"], tmp_path / arm)
        assert [f"{k}" for k in cfg.data.shifted_tests] == study.SHIFTS, arm
        assert cfg.method._target_.endswith("FinetuneModule"), arm
    assert pytest.approx(study.ALPHAS) == [0.0, 0.25, 0.5, 0.75, 1.0]
