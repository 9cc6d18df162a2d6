"""scripts/gpu_check.py, the one command that measures the GPU claims, at a tiny size on the CPU
(--dry-run), so it cannot rot while no GPU is around (the measurement is its job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_script, write_benchmark


@pytest.mark.slow  # two to four minutes on 2 cores (four loops, a DDP launch); CI runs it (.ci/run)
def test_the_dry_run_measures_every_loop_the_time_to_accuracy_curve_and_ddp(
    tmp_path: Path, monkeypatch, capsys
):
    check = load_script("gpu_check", monkeypatch)
    results = check.main(
        [
            "--dry-run",
            "--parts",
            *("throughput", "step_cost", "nonfinite_check", "time_to_accuracy", "airbench", "ddp"),
            *("--out", str(tmp_path)),
        ]
    )
    assert not [name for name, part in results.items() if isinstance(part, dict) and "error" in part]
    for net in ("resnet18", "cnn"):
        rates = results["throughput"][net]
        assert all(rates[k] > 0 for k in ("plain", "template", "template_per_image"))
        assert rates["template_x_plain"] == pytest.approx(rates["template"] / rates["plain"])
    check_cost = results["nonfinite_check"]
    assert check_cost["watch"] > 0 and check_cost["read_every_step"] > 0
    assert check_cost["watch_x_read_every_step"] == pytest.approx(
        check_cost["watch"] / check_cost["read_every_step"]
    )
    curve = results["time_to_accuracy"]["curve"]
    assert [row["epoch"] for row in curve] == [1, 2]  # validated every epoch
    assert 0 < curve[0]["train_seconds"] < curve[1]["train_seconds"]  # training time only, growing
    assert curve[0]["peak_lr"] == pytest.approx(0.4)  # the one-cycle peak of cifar10_fast
    assert isinstance(results["time_to_accuracy"]["diverged"], bool)
    assert results["ddp"]["devices"] == 2 and results["ddp"]["steps"] > 0
    assert [row["epoch"] for row in results["airbench"]["curve"]] == [1, 2]
    cost = results["step_cost"]
    assert set(cost["ms_per_step"]) == {"template", "bare_lightning", "plain"}
    assert cost["counts"]["template"]["non_logging"]["copies_max"] == 0
    assert json.loads((tmp_path / "gpu_check.json").read_text())["device"] == "cpu (dry run)"
    assert "resnet18 template_x_plain" in capsys.readouterr().out


@pytest.mark.slow  # torch.compile on the CPU takes a minute; CI runs it (.ci/run)
def test_the_dry_run_compiles_the_net(tmp_path: Path, monkeypatch):
    check = load_script("gpu_check", monkeypatch)
    results = check.main(["--dry-run", "--parts", "compile", "--out", str(tmp_path)])
    assert "error" not in results["compile"] and results["compile"]["template"] > 0


def test_without_a_gpu_the_full_check_says_how_to_dry_run(monkeypatch):
    check = load_script("gpu_check", monkeypatch)
    monkeypatch.setattr(check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--dry-run"):
        check.main([])


def test_a_failing_part_is_recorded_and_the_others_still_run(monkeypatch):
    check = load_script("gpu_check", monkeypatch)
    results: dict = {}
    check.run_part("broken", lambda: 1 / 0, results)
    check.run_part("fine", lambda: {"value": 1.0}, results)
    assert results["broken"]["error"].startswith("ZeroDivisionError") and results["fine"]["value"] == 1.0


@pytest.mark.slow  # eleven short trainings; CI runs it (.ci/run)
def test_the_dry_run_times_an_epoch_of_every_distillation_recipe(tmp_path: Path, monkeypatch):
    check = load_script("gpu_check", monkeypatch)
    part = check.main(["--dry-run", "--parts", "distill", "--out", str(tmp_path)])["distill"]
    assert "error" not in part, part.get("traceback")
    seconds = part["epoch_seconds"]
    assert set(seconds) == {"teacher", *check.DISTILL_RECIPES} and all(s > 0 for s in seconds.values())
    hours = part["hours_240_epochs_teacher_then_student"]
    assert hours["crd"] == pytest.approx(round(240 * (seconds["teacher"] + seconds["crd"]) / 3600, 2))


def test_the_office31_part_runs_one_task_when_the_data_are_there_and_says_so_when_not(
    tmp_path: Path, monkeypatch
):
    check = load_script("gpu_check", monkeypatch)
    root = write_benchmark(
        tmp_path / "office31", "office31", per_class=2, domains=["amazon", "webcam"], size=8
    )
    results = check.main(
        ["--dry-run", "--parts", "office31", "--office31-root", str(root), "--out", str(tmp_path)]
    )
    part = results["office31"]
    assert "error" not in part and 0 <= part["target_acc"] <= 1 and part["train_seconds"] > 0
    assert -2 <= part["a_distance_end"] <= 2
    missing = check.main(
        ["--dry-run", "--parts", "office31", "--office31-root", str(tmp_path / "no"), "--out", str(tmp_path)]
    )
    assert "no Office-31 under" in missing["office31"]["skipped"]
