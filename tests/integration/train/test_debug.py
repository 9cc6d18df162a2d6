"""Debug presets shorten a run without changing what it is: every pipeline stage runs, shortened,
and writes its checkpoint; the trainer, strategy and logger the user chose stay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import (
    CONF_DIR,
    SHARED_DATA,
    compose_config,
    write_benchmark,
    write_cifar10,
    write_cifar100,
    write_stl10,
)
from transferlab.train import train
from transferlab.utils.errors import ConfigError

PRESETS = ("fdr", "limit", "overfit")
SHORTENING = ("max_epochs", "limit_train_batches", "overfit_batches", "check_val_every_n_epoch")


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(
    "choice",
    [["trainer=ddp_cpu"], ["logger=csv"], ["trainer=gpu"], ["logger=tensorboard"]],
    ids=["ddp_cpu", "csv", "gpu", "tensorboard"],
)
def test_a_debug_preset_keeps_the_trainer_strategy_and_logger_chosen(preset, choice, tmp_path):
    plain = compose_config(choice, tmp_path)
    debug = compose_config([*choice, f"debug={preset}"], tmp_path)
    for key in ("accelerator", "devices", "strategy", "precision", "sync_batchnorm"):
        assert debug.trainer.get(key) == plain.trainer.get(key), key
    assert debug.logger == plain.logger
    assert "fast_dev_run" not in debug.trainer  # Lightning's own preset drops loggers and checkpoints


@pytest.mark.parametrize("preset", PRESETS)
def test_a_debug_preset_shortens_the_pipeline_stage_over_its_own_length(preset, tmp_path):
    from transferlab.pipeline import pretraining_config

    cfg = compose_config(["experiment=digits_split_finetune", f"debug={preset}"], tmp_path)
    stage = pretraining_config(cfg)
    assert cfg.pretrain.trainer.max_epochs == 15  # the recipe's own length ...
    for key in SHORTENING:
        assert stage.trainer.get(key) == cfg.trainer.get(key), key  # ... gives way to the preset's
    assert set(cfg.shared_trainer_keys) <= set(cfg.trainer)


@pytest.mark.slow  # CI runs it (.ci/run)
@pytest.mark.parametrize("experiment", ["digits_split_finetune", "digits_distill"])
def test_debug_fdr_runs_a_pipeline_each_stage_one_step_with_its_checkpoint(experiment, tmp_path):
    cfg = compose_config(
        [f"experiment={experiment}", "debug=fdr", "trainer.enable_progress_bar=false", "logger=csv"],
        tmp_path / "run",
    )
    summary = train(cfg)
    assert summary["global_step"] == 1 and summary["validated"]
    (stage_dir,) = (d for d in (Path(cfg.paths.cache_dir) / "pretrain").iterdir() if d.is_dir())
    stage = read_metrics(stage_dir)
    assert stage["global_step"] == 1 and Path(stage["best"]["ckpt_path"]).is_file()
    assert (stage_dir / "checkpoints" / "manifest.json").is_file()
    # the target stage used the stage's checkpoint, and the csv logger the user chose wrote logs
    assert str(stage_dir) in (cfg.method.get("source_ckpt") or cfg.method.get("teacher_ckpt"))
    assert list(Path(cfg.paths.output_dir).rglob("metrics.csv"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_a_gpu_experiment_on_a_machine_without_one_says_so_in_one_line(tmp_path):
    cfg = compose_config(["experiment=cifar10_fast", "debug=fdr"], tmp_path)
    with pytest.raises(
        ConfigError, match=r"^trainer.accelerator=gpu but this machine has no GPU; .*trainer=cpu"
    ):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def asks_for_a_gpu(experiment: str) -> bool:
    return "override /trainer: gpu" in (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()


@pytest.mark.slow  # 80 s on 2 cores; CI runs it (.ci/run)
@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_under_debug_fdr(experiment, tmp_path, skip_cifar_checksums):
    """Small real-format CIFAR-10/100 and STL-10 where an experiment downloads them; the shared
    ImageFolder subsets where it reads those."""
    cfg = compose_config(
        [
            f"experiment={experiment}",
            "debug=fdr",
            "trainer.enable_progress_bar=false",
            f"paths.offline_data={SHARED_DATA}",
            *(["trainer=cpu"] if asks_for_a_gpu(experiment) else []),  # the recipe, on this machine
        ],
        tmp_path / "run",
    )
    data_dir = Path(cfg.paths.data_dir)
    write_cifar10(data_dir)
    write_cifar100(data_dir, per_class_train=60)  # the few-label recipes take 50 per class
    write_stl10(data_dir)
    if experiment == "imagefolder_source":
        cfg.data.root = str(SHARED_DATA / "cifar10")
    if cfg.data.get("source", {}).get("benchmark"):  # a published benchmark: its tree, no ImageNet weights
        for domain in (cfg.data.source, cfg.data.target):
            write_benchmark(Path(domain.root), domain.benchmark, per_class=2, domains=[domain.domain], size=8)
        cfg.net.weights = None
        cfg.data.image_size = 32
    summary = train(cfg)
    assert summary["global_step"] == 1 and summary["validated"]
    assert any(key.startswith("test/") and key.endswith("acc") for key in summary["final"])
    assert Path(summary["best"]["ckpt_path"]).is_file()
