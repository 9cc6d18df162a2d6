"""Sweeps that end in a table: real multiruns, relaunches, failures, Optuna, launchers, reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF_DIR, FAST
from transferlab.callbacks.confusion import per_class_accuracy, write_confusion_matrix
from transferlab.report.sweep import summarize
from transferlab.train import train
from transferlab.utils.entry import run_label

ROOT = Path(__file__).resolve().parents[3]


def multirun(log_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "transferlab.train", "-m", *FAST, f"paths.log_dir={log_dir}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def job_dirs(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("*/multiruns/*/[0-9]*"), key=job_number)


def job_number(job_dir: Path) -> int:
    return int(job_dir.name.split("_", 1)[0])


def test_a_2x2_sweep_ends_in_a_table_and_a_relaunch_skips_finished_jobs(tmp_path: Path):
    result = multirun(tmp_path, "method.optimizer.lr=0.05,0.1", "seed=0,1")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_dirs(tmp_path)
    assert [job.name for job in jobs] == [
        "0_lr=0.05,seed=0",
        "1_lr=0.05,seed=1",
        "2_lr=0.1,seed=0",
        "3_lr=0.1,seed=1",
    ]  # named by the values each job sweeps (the constant overrides left out)
    sweep_dir = jobs[0].parent
    accs: dict[str, list[float]] = {"0.05": [], "0.1": []}
    for job in jobs:
        lr = next(o for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) if "lr=" in o)
        accs[lr.split("=")[1]].append(json.loads((job / "metrics.json").read_text())["final"]["test/acc"])

    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    table = (sweep_dir / "summary.md").read_text()
    for lr, values in accs.items():
        mean = sum(values) / 2
        assert f"| {lr} | 2 | 0 | {mean:.4f} ± " in table
    assert "| method.optimizer.lr | n |" in table and table.count("\n| 0.") == 2
    assert "sweep summary:" in result.stdout

    stamps = {job: (job / "metrics.json").stat().st_mtime_ns for job in jobs}
    again = multirun(tmp_path, "method.optimizer.lr=0.05,0.1", "seed=0,1")
    assert again.returncode == 0, again.stderr[-3000:]
    output = again.stdout + again.stderr
    assert output.count("finished before, skipped") == 4 and output.count("Trainer.fit") == 0
    assert job_dirs(tmp_path) == jobs  # the same directory, no new jobs
    assert all((job / "metrics.json").stat().st_mtime_ns == stamp for job, stamp in stamps.items())


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path: Path):
    # lr=1e30 makes the loss non-finite at once; the other job must still finish
    result = multirun(tmp_path, "method.optimizer.lr=1e30,0.05")
    assert result.returncode == 1  # the sweep says it did not fully succeed
    failed, done = job_dirs(tmp_path)
    assert (done / "metrics.json").is_file() and not (done / "failed.json").exists()
    record = json.loads((failed / "failed.json").read_text())
    assert record["error"].startswith("TrainingError: non-finite loss at step")
    assert not (failed / "metrics.json").exists()
    rows = {r["job"]: r for r in csv.DictReader((failed.parent / "summary.csv").open())}
    assert rows[str(failed)]["status"] == "failed" and "non-finite" in rows[str(failed)]["error"]
    assert "1 of 2 jobs did not finish" in result.stderr


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_an_optuna_sweep_of_three_trials_optimises_validation_accuracy(tmp_path: Path):
    result = multirun(
        tmp_path,
        "method=finetune",
        "method/regularizer=l2",
        "hparams_search=finetune_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study_dir = next(tmp_path.glob("*/optuna/*"))
    trials = sorted((p for p in study_dir.iterdir() if p.name[0].isdigit()), key=job_number)
    assert len(trials) == 3 and all(t.name.startswith(f"{i}_lam=") for i, t in enumerate(trials))
    best_vals = [json.loads((t / "metrics.json").read_text())["best"]["val/acc"] for t in trials]
    lams = {yaml.safe_load((t / ".hydra" / "overrides.yaml").read_text())[0] for t in trials}
    assert len(lams) == 3 and all(lam.startswith("method.lam=") for lam in lams)
    results = yaml.safe_load((study_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(best_vals))


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_a_failed_optuna_trial_is_recorded_and_the_study_goes_on(tmp_path: Path):
    # lr=1e30 makes the loss non-finite at once: those trials fail, the others must still run
    result = multirun(
        tmp_path,
        "method=finetune",
        "method/regularizer=l2",
        "hparams_search=finetune_optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "method.optimizer.lr=choice(1e30,0.05)",
    )
    assert result.returncode == 1  # the sweep says it did not fully succeed ...
    study_dir = next(tmp_path.glob("*/optuna/*"))
    trials = sorted((p for p in study_dir.iterdir() if p.name[0].isdigit()), key=job_number)
    assert len(trials) == 4  # ... after running every trial
    failed = [t for t in trials if (t / "failed.json").is_file()]
    done = [t for t in trials if (t / "metrics.json").is_file()]
    assert failed and done and len(failed) + len(done) == 4
    assert job_number(failed[0]) < job_number(trials[-1])  # a failure did not end the study
    results = yaml.safe_load((study_dir / "optimization_results.yaml").read_text())
    best = max(json.loads((t / "metrics.json").read_text())["best"]["val/acc"] for t in done)
    assert results["best_value"] == pytest.approx(best)
    assert results["best_params"]["method.optimizer.lr"] == 0.05
    rows = list(csv.DictReader((study_dir / "summary.csv").open()))
    assert sorted(r["status"] for r in rows) == sorted(["failed"] * len(failed) + ["done"] * len(done))
    assert f"{len(failed)} of 4 jobs did not finish" in result.stderr


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_an_optuna_study_whose_every_trial_fails_ends_with_its_summary_not_a_traceback(tmp_path: Path):
    result = multirun(
        tmp_path,
        "method=finetune",
        "method/regularizer=l2",
        "hparams_search=finetune_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "method.optimizer.lr=1e30",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "No trials are completed yet" not in result.stderr
    assert "error: all 2 Optuna trials failed" in result.stderr.strip().splitlines()[-1]
    assert "| failed |" not in result.stdout and "Jobs not done (2 of 2)" in result.stdout
    study_dir = next(tmp_path.glob("*/optuna/*"))
    rows = list(csv.DictReader((study_dir / "summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed", "failed"] and all(
        "non-finite" in r["error"] for r in rows
    )


def hydra_config(*overrides: str):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    ("launcher", "target"),
    [
        ("local", "hydra._internal.core_plugins.basic_launcher.BasicLauncher"),
        ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
        ("slurm_cpu", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_configs_compose_and_name_installed_launchers(launcher, target):
    cfg = hydra_config(f"launcher={launcher}", "experiment=cifar10_source")
    assert cfg.hydra.launcher._target_ == target
    hydra.utils.get_class(target)  # the plugin is installed
    if launcher == "slurm":  # one SLURM task per GPU, nodes from the trainer: multi-node DDP
        cfg = hydra_config("launcher=slurm", "trainer.devices=8", "trainer.num_nodes=2")
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.accelerator == "gpu"
        assert (cfg.hydra.launcher.tasks_per_node, cfg.hydra.launcher.gpus_per_node) == (8, 8)
        assert cfg.hydra.launcher.nodes == 2 and cfg.hydra.launcher.max_num_timeout > 0
    if launcher == "slurm_cpu":  # the same without GPUs: a CPU cluster needs only its partition
        cfg = hydra_config("launcher=slurm_cpu", "hydra.launcher.partition=cpu")
        assert (cfg.trainer.accelerator, cfg.trainer.strategy, cfg.trainer.sync_batchnorm) == (
            "cpu",
            "ddp",
            False,
        )
        assert (
            cfg.hydra.launcher.gpus_per_node is None
            and cfg.hydra.launcher.tasks_per_node == cfg.trainer.devices
        )


@pytest.mark.parametrize(
    ("search", "experiment"), [("finetune_optuna", "split_finetune"), ("distill_optuna", "offline_distill")]
)
def test_hparams_search_configs_tune_a_validation_metric(search, experiment):
    """Each search (with the experiment its usage line names) tunes keys its experiment has."""
    usage = (CONF_DIR / "hparams_search" / f"{search}.yaml").read_text()
    assert f"experiment={experiment} hparams_search={search}" in usage
    cfg = hydra_config(f"experiment={experiment}", f"hparams_search={search}")
    assert cfg.optimized_metric.startswith("val/") and cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    params = set(cfg.hydra.sweeper.params)
    assert params and all(OmegaConf.select(cfg, key) is not None for key in params), params


def test_tensorboard_hparams_hold_every_run_setting_with_its_final_metrics(fast_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = fast_cfg("logger=tensorboard", "method.optimizer.lr=0.07")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir) / "tensorboard"
    session = EventAccumulator(str(run_dir / "hparams"))
    session.Reload()
    content = session.PluginTagToContent("hparams")
    # a session, no experiment config: TensorBoard builds the table from all sessions in its
    # logdir (each experiment keeps its columns), the values that differ first
    assert set(content) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    run = Path(cfg.paths.output_dir)  # the trial ID: the run's name first, then its sweep's
    assert start.session_start_info.group_name == f"{run.name} · {run.parent.name}"
    assert hparams["method.optimizer.lr"].number_value == pytest.approx(0.07)
    assert hparams["data._target_"].string_value == "transferlab.data.SyntheticDataModule"
    # the metrics of the table: the session run's scalars, the headline ones only
    assert set(session.Tags()["scalars"]) == {"test/acc", "val/acc_best"}
    assert session.Scalars("test/acc")[-1].value == pytest.approx(summary["final"]["test/acc"])
    assert session.Scalars("val/acc_best")[-1].value == pytest.approx(summary["best"]["val/acc"])
    training = EventAccumulator(str(run_dir))
    training.Reload()
    assert not [t for t in training.Tags()["scalars"] if t.startswith("hparams/")]  # no flood


def test_test_time_reports_per_class_accuracy_and_a_confusion_matrix(fast_cfg):
    cfg = fast_cfg("trainer.max_epochs=2")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    rows = list(csv.reader((run_dir / "confusion_matrix.csv").open()))
    names = rows[0][1:]
    counts = torch.tensor([[int(c) for c in row[1:]] for row in rows[1:]])
    assert names == [r[0] for r in rows[1:]] == ["class_0", "class_1", "class_2", "class_3"]
    assert int(counts.sum()) == 4 * 8  # every test image once (test_size=8 per class)
    # the per-class accuracies agree with the matrix, and their weighted mean is the test accuracy
    per_class = summary["test_class_acc"]
    for i, name in enumerate(names):
        assert per_class[name] == pytest.approx(int(counts[i, i]) / int(counts[i].sum()))
    assert counts.trace().item() / counts.sum().item() == pytest.approx(summary["final"]["test/acc"])
    assert (run_dir / "confusion_matrix.png").stat().st_size > 1000


def test_the_confusion_matrix_shows_its_counts_and_names_its_run(tmp_path: Path):
    confusion = torch.tensor([[3, 1, 0], [0, 5, 0], [2, 2, 4]])
    figure = write_confusion_matrix(confusion, ["a", "b", "c"], tmp_path, "finetune: method.lam=0.1, seed=1")
    ax = figure.axes[0]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(0, 0): "3", (0, 1): "1", (1, 1): "5", (2, 0): "2", (2, 1): "2", (2, 2): "4"}
    assert ax.get_title().startswith("finetune: method.lam=0.1, seed=1\n")
    long = "finetune: " + ", ".join(f"key{i}=value{i}" for i in range(20))  # wrapped, not cut off
    title = write_confusion_matrix(confusion, ["a", "b", "c"], tmp_path, long).axes[0].get_title()
    assert title.replace("\n", " ").startswith(long) and max(map(len, title.split("\n"))) <= 64
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000


def test_a_runs_label_is_its_task_and_its_command_line_overrides():
    from hydra.core.hydra_config import HydraConfig

    assert run_label("finetune", "run") == "finetune"  # train(cfg) outside Hydra
    cfg = hydra_config("method.optimizer.lr=0.1", "seed=3")
    cfg.hydra.runtime.output_dir = "job"
    HydraConfig.instance().set_config(cfg)
    try:
        assert run_label("finetune", "job") == "finetune: method.optimizer.lr=0.1, seed=3"
        assert run_label("source", "cache/source-1a2b") == "source"  # a pipeline stage's run
    finally:
        HydraConfig.instance().cfg = None


def test_per_class_accuracy_is_the_recall_of_each_class():
    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [2, 2, 4]])
    accuracy = per_class_accuracy(confusion)
    assert accuracy[0].item() == pytest.approx(0.75) and accuracy[2].item() == pytest.approx(0.5)
    assert torch.isnan(accuracy[1])  # no examples: no accuracy, not zero


def test_summary_lists_unfinished_jobs_with_their_state(tmp_path: Path):
    for number, state in enumerate(["done", "failed", "unfinished"]):
        job = tmp_path / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={number}"]))
        if state == "done":
            (job / "metrics.json").write_text(json.dumps({"final": {"test/acc": 0.5}}))
        elif state == "failed":
            (job / "failed.json").write_text(json.dumps({"error": "TrainingError: boom"}))
    result = summarize([tmp_path])
    assert [j.status for j in result["jobs"]] == ["done", "failed", "unfinished"]
    assert "- failed: `" in result["table"] and "TrainingError: boom" in result["table"]
    assert "- unfinished: `" in result["table"]


def test_a_job_is_named_by_the_values_it_sweeps(monkeypatch):
    from transferlab.utils.config import fixed_overrides, job_name

    assert job_name(3, ["data=digits", "method.lam=0.1", "seed=1"], "data") == "3_lam=0.1,seed=1"
    both = ["method.lam=0.1", "pretrain.method.lam=1"]  # one last part, two keys: spelled out
    assert job_name(0, both, "") == "0_method.lam=0.1,pretrain.method.lam=1"
    assert job_name(1, ["data.root=/a/b"], "") == "1_root=-a-b"  # no new directory levels
    assert job_name(2, ["seed=0"], "seed") == "2"  # nothing swept: the number alone
    # the command line's one-valued keys (and deletions) are shared; sweeps are not
    values = ["0,0.1", "[1,2]", "range(1,3)", "'a,b'", "glob(*)", "0.1"]
    argv = ["train.py", "-m", *(f"k{i}={v}" for i, v in enumerate(values)), "~k6"]
    monkeypatch.setattr(sys, "argv", argv)
    assert fixed_overrides() == "k1|k3|k5|k6"
