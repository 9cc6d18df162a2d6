"""The command line: run directories, sweeps, DDP launches (bad input: test_bad_inputs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FAST

ROOT = Path(__file__).resolve().parents[3]


def command(module: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", module, *overrides]


def run(module: str, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        command(module, *overrides), capture_output=True, text=True, env=env, cwd=ROOT, timeout=300
    )


def test_two_runs_started_together_get_different_run_directories(tmp_path: Path):
    args = [*FAST, "debug=fdr", f"paths.log_dir={tmp_path}", "task_name=same"]
    procs = [
        subprocess.Popen(
            command("transferlab.train", *args),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    runs = sorted((tmp_path / "same" / "runs").iterdir())
    assert len(runs) == 2
    assert all((run_dir / "metrics.json").is_file() for run_dir in runs)


def test_a_multirun_sweep_writes_one_metrics_file_per_job(tmp_path: Path):
    result = run("transferlab.train", "-m", *FAST, "debug=fdr", f"paths.log_dir={tmp_path}", "seed=0,1")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted((tmp_path / "debug" / "multiruns").glob("*/[0-9]*"))
    assert [job.name for job in jobs] == ["0_seed=0", "1_seed=1"]  # named by what it sweeps
    for job in jobs:
        assert "test/acc" in json.loads((job / "metrics.json").read_text())["final"]


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_a_glob_sweep_over_experiments_with_and_without_a_pretraining_stage_runs_each(tmp_path: Path):
    """The README's recipe: a key only some experiments have takes ``++``; debug=fdr shortens the
    pipeline's stage instead of leaving it without a checkpoint."""
    result = run(
        "transferlab.train",
        "-m",
        "experiment=glob(digits_split_*)",
        "debug=fdr",
        "++pretrain.trainer.max_epochs=2",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.log_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted((tmp_path / "debug" / "multiruns").glob("*/[0-9]*"))
    tasks = {yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())[0] for job in jobs}
    assert tasks == {"experiment=digits_split_finetune", "experiment=digits_split_scratch"}
    for job in jobs:
        assert "test/acc" in json.loads((job / "metrics.json").read_text())["final"]
    (stage,) = (d for d in (tmp_path / "cache" / "pretrain").iterdir() if d.is_dir())
    assert json.loads((stage / "metrics.json").read_text())["global_step"] == 1  # shortened, not skipped


def test_ddp_launches_its_processes_into_one_run_directory(tmp_path: Path):
    """trainer=ddp re-launches the command per rank; every rank must write into the same run."""
    result = run(
        "transferlab.train",
        *FAST,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.sync_batchnorm=false",
        "data.batch_size=16",
        f"paths.log_dir={tmp_path}",
        "task_name=ddp",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "ddp" / "runs").iterdir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    # 116 training images, global batch 16 over 2 ranks of 8: ceil(58 / 8) steps per epoch
    assert metrics["global_step"] == 8


def test_the_override_check_expands_a_glob_sweep_instead_of_crashing(capsys):
    """``-m "experiment=glob(*)"``: the key check composes the first matching option."""
    from transferlab.utils.entry import check_override_keys

    check_override_keys("train", ["-m", "experiment=glob(*)", "debug=fdr"])  # no HydraException
    with pytest.raises(SystemExit):
        check_override_keys(
            "train", ["-m", "experiment=glob(digits_*,exclude=digits_source)", "method.lamda=1"]
        )
    assert "method.lamda is not in the config; valid keys under method: " in capsys.readouterr().err
