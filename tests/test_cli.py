"""The command line: run directories, sweeps, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, write_image_tree

ROOT = Path(__file__).resolve().parents[1]


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
    assert [job.name for job in jobs] == ["0", "1"]
    for job in jobs:
        assert "test/acc" in json.loads((job / "metrics.json").read_text())["final"]


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["data.classes=[class_0,cow]"],
            "unknown class name(s) ['cow'] in data.classes; valid names",
        ),
        (["data.train_per_class=1000"], "data.train_per_class=1000 but class 'class_0' has only"),
        (["ckpt_path=/no/such/last.ckpt"], "checkpoint not found: ckpt_path=/no/such/last.ckpt"),
        (["data=imagefolder", "data.root={tree}"], "has no 'train' folder"),
        (["data=imagefolder", "data.root={empty_class}"], "has no images"),
        (["data=cifar10", "data.root={tmp}", "data.download=false"], "point data.root at a folder"),
        (["trainer=ddp_cpu", "data.batch_size=15"], "must divide evenly over 2 devices"),
        (["method=finetune", "method.source_ckpt=/no/such.ckpt"], "not found: method.source_ckpt=/no/such"),
        (["method=finetune", "method.lam=-0.5"], "method.lam=-0.5 must be >= 0"),
    ],
    ids=[
        "unknown-class",
        "too-many-per-class",
        "missing-ckpt",
        "malformed-tree",
        "empty-class",
        "missing-cifar",
        "uneven-batch",
        "missing-source",
        "negative-lambda",
    ],
)
def test_bad_input_exits_with_one_clear_line(tmp_path: Path, overrides, expected):
    empty_class = write_image_tree(tmp_path / "e", {"a": 1}, splits=("train", "test"))
    (empty_class / "train" / "b").mkdir()
    paths = {"tree": tmp_path / "t", "empty_class": empty_class, "tmp": tmp_path}
    (tmp_path / "t").mkdir()
    args = [*FAST, f"paths.log_dir={tmp_path / 'logs'}", *[o.format(**paths) for o in overrides]]
    assert expected in error_line(run("transferlab.train", *args))


def test_eval_of_a_missing_checkpoint_is_one_clear_line(tmp_path: Path):
    result = run("transferlab.eval", "ckpt_path=/no/such.ckpt", f"paths.log_dir={tmp_path}")
    assert "checkpoint not found: ckpt_path=/no/such.ckpt" in error_line(result)


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
