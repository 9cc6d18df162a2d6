"""Sweeps through a real SLURM cluster (one node on this machine, tests/slurm/cluster.sh): the
launcher presets run, DDP runs over srun, and a failed job is recorded. Marked `slurm`: CI starts
the cluster and runs them (.ci/run); `pytest -m slurm -n 0` here, as root."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DIGITS_CLI, with_overrides

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[3]
CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
# the CPU preset, sized to this one-node cluster: 2 tasks of 1 CPU per job
ON_SLURM = [
    "launcher=slurm_cpu",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, timeout=900)
    yield
    subprocess.run(["bash", str(CLUSTER), "stop"], check=False, timeout=120)


def sweep_command(log_dir: Path, *overrides: str) -> list[str]:
    run = with_overrides(DIGITS_CLI, f"paths.log_dir={log_dir}", *overrides)
    return [sys.executable, "-m", "transferlab.train", "-m", *run]


def sweep(log_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = sweep_command(log_dir, *overrides)
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=900)


def table_rows(log_dir: Path) -> list[str]:
    """The rows of the sweep's summary.md (not its constant line, which names the launcher)."""
    (summary,) = log_dir.glob("*/multiruns/*/summary.md")
    return [line for line in summary.read_text().splitlines() if line.startswith("| 0.")]


def test_a_2x2_sweep_on_slurm_runs_ddp_over_srun_and_ends_in_the_local_ddp_sweeps_table(tmp_path: Path):
    grid = ["method.optimizer.lr=0.01,0.05", "seed=0,1"]
    on_slurm = sweep(tmp_path / "slurm", *ON_SLURM, *grid)
    assert on_slurm.returncode == 0, on_slurm.stderr[-3000:]
    local = sweep(tmp_path / "local", "trainer=ddp_cpu", *grid)  # the same two ranks, spawned here
    assert local.returncode == 0, local.stderr[-3000:]
    rows = table_rows(tmp_path / "slurm")
    assert len(rows) == 2 and rows == table_rows(tmp_path / "local")
    # every job was a SLURM job of two tasks, each a DDP rank (Lightning's SLURM environment)
    logs = list((tmp_path / "slurm").glob("*/multiruns/*/.submitit/*/*_log.err"))
    assert len(logs) == 4 * 2
    ranks = sorted(line for log in logs for line in log.read_text().splitlines() if "GLOBAL_RANK" in line)
    assert ranks.count("Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2") == 4
    jobs = sorted((tmp_path / "slurm").glob("*/multiruns/*/[0-9]*"))
    assert [job.name for job in jobs] == [
        "0_lr=0.01,seed=0",
        "1_lr=0.01,seed=1",
        "2_lr=0.05,seed=0",
        "3_lr=0.05,seed=1",
    ]
    for job in jobs:  # the global batch was split over the two ranks: half the steps of one process
        assert json.loads((job / "metrics.json").read_text())["global_step"] > 0


def test_a_failed_job_in_a_slurm_sweep_is_recorded_and_the_other_finishes(tmp_path: Path):
    result = sweep(tmp_path, *ON_SLURM, "method.optimizer.lr=1e30,0.05")  # 1e30: a non-finite loss at once
    assert result.returncode == 1
    failed, done = sorted(tmp_path.glob("*/multiruns/*/[0-9]*"))
    assert json.loads((failed / "failed.json").read_text())["error"].startswith(
        "TrainingError: non-finite loss"
    )
    assert (done / "metrics.json").is_file() and not (failed / "metrics.json").exists()
    (summary,) = tmp_path.glob("*/multiruns/*/summary.md")
    assert "- failed: `" in summary.read_text() and "1 of 2 jobs did not finish" in result.stderr
    assert yaml.safe_load((done / ".hydra" / "overrides.yaml").read_text())[-1] == "method.optimizer.lr=0.05"


def test_a_job_signalled_for_its_time_limit_is_requeued_resumes_and_ends_as_an_uninterrupted_run(
    tmp_path: Path,
):
    # SLURM warns a job of its time limit with the signal of `#SBATCH --signal=USR2@<delay>`,
    # "up to 60 s early" (measured: 32 s and 52 s into a 2-minute job with a 60 s delay), so a
    # real limit would stop the first attempt anywhere from before the first checkpoint to after
    # the last epoch. The test sends that same signal to the job's tasks once the first
    # last.ckpt is written (mid-training), and starts the requeued job without SLURM's 2-minute
    # wait before a requeued job may start again.
    epochs = "trainer.max_epochs=8"
    limit = [
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.signal_delay_s=120",
        "hydra.launcher.max_num_timeout=3",
    ]
    sweep_dir = tmp_path / "slurm"
    running = subprocess.Popen(
        sweep_command(sweep_dir, *ON_SLURM, *limit, epochs),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    signalled = False
    deadline = time.monotonic() + 900
    while running.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
        submitted = [d.name for d in sweep_dir.glob("*/multiruns/*/.submitit/[0-9]*") if d.is_dir()]  # job id
        if not signalled and submitted and list(sweep_dir.glob("*/multiruns/*/0/checkpoints/last.ckpt")):
            subprocess.run(["scancel", "--signal=USR2", submitted[0]], check=True)
            signalled = True
        for job_id, state, reason in squeue():
            if signalled and job_id == submitted[0] and state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=False)
    _, stderr = running.communicate(timeout=60)
    assert signalled and running.returncode == 0, stderr[-3000:]
    (job,) = sweep_dir.glob("*/multiruns/*/0")
    (script,) = job.parent.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --signal=USR2@120" in script.read_text()  # how SLURM warns of the time limit
    logs = "".join(log.read_text() for log in job.parent.glob(".submitit/*/*_log.*"))
    # submitit checkpointed the job and requeued it; SLURM may stop the step before submitit's
    # own "Requeued job" line reaches the log, but then slurmstepd writes why it stopped it
    assert "Calling checkpoint method" in logs
    assert "Requeued job" in logs or "DUE TO JOB REQUEUE" in logs
    assert "Restored all states from the checkpoint" in logs  # Lightning, on rank 0
    assert (job / "train.log").read_text().count("resuming from") == 2  # both ranks, once
    assert not (job / "failed.json").exists()
    local = sweep(tmp_path / "local", "trainer=ddp_cpu", epochs)  # the same two ranks, uninterrupted
    assert local.returncode == 0, local.stderr[-3000:]
    (uninterrupted,) = (tmp_path / "local").glob("*/multiruns/*/0")
    requeued, plain = (json.loads((d / "metrics.json").read_text()) for d in (job, uninterrupted))
    assert requeued["global_step"] == plain["global_step"] > 0
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss"):
        assert requeued["final"][key] == plain["final"][key], key


def squeue() -> list[tuple[str, str, str]]:
    """(job id, state, reason) of the cluster's jobs."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r"], capture_output=True, text=True).stdout
    return [tuple(line.split("|")) for line in out.split()]  # type: ignore[misc]
