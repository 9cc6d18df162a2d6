"""A fine-tuning sweep tested in and out of distribution: every run tests on the shifted sets it
names, and the summary puts ID and OOD accuracy side by side with each arm's gain over its
control on both, and the OOD-against-ID plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FAST, run_module
from transferlab.report.sweep import summarize

NOISY = (
    "+data.shifted_tests.noisy={_target_: transferlab.data.SyntheticDataModule, noise: 1.5, num_classes: 4}"
)


def test_a_fine_tuning_sweep_reports_id_and_ood_side_by_side(tmp_path: Path):
    sweep = tmp_path / "sweep"
    result = run_module(
        "train", "-m", *FAST, "method=finetune", "pretrain=synthetic", "pretrain.data.image_size=16",
        NOISY, "method.lam=0,0.5", "seed=0,1", f"hydra.sweep.dir={sweep}",
        f"paths.log_dir={tmp_path / 'logs'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(runs) == 4 and all("test/shift_noisy_acc" in r["final"] for r in runs)
    summary = summarize([sweep])
    rows = {r["method.lam"]: r for r in summary["shift"]}
    assert summary["control"] == ("method.lam", "0")
    by = {(r["final"]["test/acc"], r["final"]["test/shift_noisy_acc"]) for r in runs}
    ood = rows["0.5"]["shifted"]["noisy"]
    assert all(any(v == pytest.approx(o) for _, o in by) for v in ood["values"])  # the runs' own values
    control = rows["0"]["shifted"]["noisy"]
    assert ood["gain"] == pytest.approx(ood["mean"] - control["mean"])  # paired by seed, both seeds
    text = (sweep / "summary.md").read_text()
    assert "## In and out of distribution" in text and "OOD noisy" in text and "(control)" in text
    assert (sweep / "summary_ood_vs_id.png").stat().st_size > 0
