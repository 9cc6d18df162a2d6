"""Sweep summaries: one row per combination of swept values, correct means, failed jobs kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from transferlab.report.sweep import summarize, y_limits


def fake_job(
    root: Path,
    number: int,
    overrides: list[str],
    acc: float | None,
    notes: tuple = (),
    control: bool | None = None,
) -> None:
    """A job directory as a run leaves it; ``control``: what its method recorded (transfer term off)."""
    job = root / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if acc is not None:
        final = {"test/acc": acc, "val/acc": acc - 0.1}
        record = {"final": final, "notes": list(notes), "control": control}
        (job / "metrics.json").write_text(json.dumps(record))
    else:
        (job / "failed.json").write_text(json.dumps({"error": "RuntimeError: out of memory"}))


def test_summary_groups_by_swept_values_and_averages_over_seeds(tmp_path: Path):
    accs = {
        ("0", "1"): [0.5, 0.7],
        ("0", "4"): [0.6, 0.8],
        ("0.1", "1"): [0.2, 0.4],
        ("0.1", "4"): [0.9, None],
    }
    number = 0
    for (lam, t), values in accs.items():
        for seed, acc in enumerate(values):
            fake_job(tmp_path, number, [f"method.lam={lam}", f"method.temperature={t}", f"seed={seed}"], acc)
            number += 1
    result = summarize([tmp_path])
    assert result["keys"] == ["method.lam", "method.temperature"]
    rows = {(r["method.lam"], r["method.temperature"]): r for r in result["rows"]}
    assert len(rows) == 4
    assert rows[("0", "1")]["mean"] == pytest.approx(0.6) and rows[("0", "1")]["n"] == 2
    assert rows[("0", "1")]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert math.isnan(rows[("0", "1")]["ci95"])  # two seeds: their values, no ±12.7-std interval
    assert rows[("0", "1")]["values"] == [0.5, 0.7]
    assert rows[("0.1", "4")]["failed"] == 1 and rows[("0.1", "4")]["n"] == 1  # not silently dropped
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 and sum("RuntimeError" in line for line in csv_lines) == 1
    assert csv_lines[0] == "job,status,method.lam,method.temperature,test/acc,val/acc,error,notes,seed"
    assert "| 0.1 | 4 | 1 | 1 |" in (tmp_path / "summary.md").read_text()
    assert len(result["plots"]) == 2 and all(p.stat().st_size > 0 for p in result["plots"])


def test_three_seeds_get_a_t_interval_and_each_arm_its_gain_over_the_sweeps_control(tmp_path: Path):
    accs = {"0": [0.60, 0.70, 0.65], "0.1": [0.64, 0.71, 0.72], "1": [0.58, 0.69, 0.60]}
    number = 0
    for lam, values in accs.items():
        for seed, acc in enumerate(values):
            fake_job(
                tmp_path,
                number,
                ["data=digits", f"method.lam={lam}", f"seed={seed}"],
                acc,
                control=lam == "0",
            )
            number += 1
    result = summarize([tmp_path])
    assert result["control"] == ("method.lam", "0")  # λ = 0 is the sweep's own control
    rows = {r["method.lam"]: r for r in result["rows"]}
    assert rows["0"]["ci95"] == pytest.approx(4.303 * 0.05 / 3**0.5, rel=1e-3)
    gains = [0.04, 0.01, 0.07]  # paired by seed: 0.64 − 0.60, 0.71 − 0.70, 0.72 − 0.65
    assert rows["0.1"]["gain"] == pytest.approx(sum(gains) / 3)
    assert rows["0.1"]["gain_ci95"] == pytest.approx(4.303 * 0.03 / 3**0.5, rel=1e-3)
    assert rows["0.1"]["ahead"] == 3 and rows["1"]["ahead"] == 0 and rows["0"]["control"]
    table = (tmp_path / "summary.md").read_text()
    assert table.startswith("constant: data=digits\n")  # the constant overrides, apart
    assert "| control |" in table and "+0.0400 ([" in table and "; 3/3) |" in table
    assert "| 0.6000, 0.7000, 0.6500 |" in table


def test_a_sweep_without_a_control_value_has_no_gain_column(tmp_path: Path):
    for number, (t, acc) in enumerate([("2", 0.5), ("4", 0.6)]):
        fake_job(tmp_path, number, [f"method.temperature={t}", "seed=0"], acc)
    result = summarize([tmp_path])
    assert result["control"] is None and "gain over" not in result["table"]


def test_plots_of_a_rate_stay_inside_zero_to_one():
    low, high = y_limits([0.97, 0.99, 1.0])
    assert 0.9 < low < 0.97 and high == 1.0
    assert y_limits([0.0, 0.01]) == (0.0, pytest.approx(0.03))
    assert y_limits([0.5, 2.5]) is None  # a loss: matplotlib's own range


def test_a_fine_tuning_arm_without_a_source_is_marked(tmp_path: Path):
    fake_job(tmp_path, 0, ["method=finetune", "seed=0"], 0.5, ("no source: trained from scratch",))
    fake_job(tmp_path, 1, ["method=supervised", "seed=0"], 0.6)
    result = summarize([tmp_path])
    assert "| note |" in result["table"]
    assert (
        "| finetune | 1 | 0 | 0.5000 ± — | — | 0.5000 | no source: trained from scratch |" in result["table"]
    )
    assert "| supervised | 1 | 0 | 0.6000 ± — | — | 0.6000 |  |" in result["table"]


def test_a_distillation_sweep_finds_the_student_alone_as_its_control(tmp_path: Path):
    number = 0
    for recipe, accs in {
        "none": [0.60, 0.62, 0.64],
        "kd": [0.65, 0.61, 0.70],
        "crd": [0.66, 0.66, 0.66],
    }.items():
        for seed, acc in enumerate(accs):
            fake_job(tmp_path, number, [f"distill={recipe}", f"seed={seed}"], acc, control=recipe == "none")
            number += 1
    result = summarize([tmp_path])
    assert result["control"] == ("distill", "none")
    rows = {r["distill"]: r for r in result["rows"]}
    assert rows["kd"]["gain"] == pytest.approx((0.05 - 0.01 + 0.06) / 3) and rows["kd"]["ahead"] == 2
    assert rows["crd"]["gain"] == pytest.approx((0.06 + 0.04 + 0.02) / 3) and rows["crd"]["ahead"] == 3


def test_a_control_from_another_sweep_stands_for_the_keys_it_did_not_set(tmp_path: Path):
    """distill=none,at seed=0,1,2 beside distill=at method.losses.at.lam=250,50 seed=0,1,2: the
    student alone (no λ of its own) is the control of every λ, paired by seed."""
    alone, weights = tmp_path / "alone", tmp_path / "weights"
    for seed, acc in enumerate([0.43, 0.42, 0.44]):
        fake_job(alone, seed, ["distill=none", f"seed={seed}"], acc)
    for number, (lam, seed, acc) in enumerate([("250", 0, 0.39), ("250", 1, 0.40), ("250", 2, 0.35)]):
        fake_job(weights, number, ["distill=at", f"method.losses.at.lam={lam}", f"seed={seed}"], acc)
    result = summarize([alone, weights], out_dir=tmp_path / "summary", control="distill=none")
    rows = {(r["distill"], r["method.losses.at.lam"]): r for r in result["rows"]}
    assert rows[("none", "—")]["control"]
    assert rows[("at", "250")]["gain"] == pytest.approx((-0.04 - 0.02 - 0.09) / 3)
    assert rows[("at", "250")]["ahead"] == 0


def test_a_row_that_matches_two_controls_gets_no_gain(tmp_path: Path):
    number = 0
    for overrides, acc in [
        (["method.lam=0", "net=cnn"], 0.5),
        (["method.lam=0", "data.image_size=16"], 0.6),
        (["method.lam=1", "net=cnn", "data.image_size=16"], 0.7),  # either control could be its
    ]:
        for seed in range(2):
            fake_job(tmp_path, number, [*overrides, f"seed={seed}"], acc)
            number += 1
    result = summarize([tmp_path])
    row = next(r for r in result["rows"] if r["method.lam"] == "1")
    assert "gain" not in row


def test_the_control_is_the_arm_whose_runs_say_so_whatever_its_key_is_called(tmp_path: Path):
    """A member's own weight (``method.alpha``) at 0 is found as the control because its runs
    recorded their transfer term off; ``lam=0`` whose runs did not record it is not a control."""
    said, silent = tmp_path / "said", tmp_path / "silent"
    for seed in range(3):
        for number, alpha in enumerate(["0", "0.5"]):
            fake_job(
                said,
                2 * seed + number,
                [f"method.alpha={alpha}", f"seed={seed}"],
                0.5 + seed / 10,
                control=alpha == "0",
            )
            fake_job(silent, 2 * seed + number, [f"method.lam={alpha}", f"seed={seed}"], 0.5 + seed / 10)
    assert summarize([said])["control"] == ("method.alpha", "0")
    assert summarize([silent])["control"] is None  # old records, or a method without a transfer term
    mixed = tmp_path / "mixed"  # a value whose runs disagree is no control
    fake_job(mixed, 0, ["method.lam=0", "seed=0"], 0.5, control=True)
    fake_job(mixed, 1, ["method.lam=0", "seed=1"], 0.5, control=False)
    fake_job(mixed, 2, ["method.lam=1", "seed=0"], 0.6, control=False)
    assert summarize([mixed])["control"] is None
