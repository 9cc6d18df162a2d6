"""train(cfg) and evaluate(cfg) on the real composed configs, shrunk to run in seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from conftest import (
    SHARED_DATA,
    compose_config,
    confusion_accuracy,
    write_cifar10,
    write_cifar100,
    write_image_tree,
)
from transferlab.eval import evaluate
from transferlab.train import train
from transferlab.utils.errors import CheckpointError, ConfigError


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    "data",
    [
        ["data=synthetic"],
        ["data=synthetic", "trainer.precision=bf16-mixed"],
        ["data=digits"],
        ["data=imagefolder", "data.root={tree}"],
        ["data=cifar10", "data.root={cifar10}", "data.download=false"],
        ["data=cifar100", "data.root={cifar100}", "data.download=false"],
    ],
    ids=["synthetic", "synthetic-bf16", "digits", "imagefolder", "cifar10", "cifar100"],
)
def test_fast_dev_run_of_every_datamodule(fast_cfg, tmp_path, skip_cifar_checksums, data):
    roots = {
        "tree": write_image_tree(tmp_path / "tree", {"a": 4, "b": 4, "c": 4}),
        "cifar10": write_cifar10(tmp_path / "c10"),
        "cifar100": write_cifar100(tmp_path / "c100"),
    }
    cfg = fast_cfg(*[d.format(**roots) for d in data], "debug=fdr", "data.batch_size=4")
    summary = train(cfg)
    # fast_dev_run: exactly one training step, then one test batch
    assert summary["global_step"] == 1
    accuracy, images = confusion_accuracy(Path(cfg.paths.output_dir))
    assert summary["final"]["test/acc"] == pytest.approx(accuracy, abs=1e-6) and images > 0
    assert read_metrics(Path(cfg.paths.output_dir))["final"]["test/acc"] == summary["final"]["test/acc"]


def test_training_learns_and_writes_metrics_checkpoints_and_manifest(fast_cfg):
    cfg = fast_cfg("trainer.max_epochs=6", "method.optimizer.lr=0.05")
    summary = train(cfg)
    run = Path(cfg.paths.output_dir)
    metrics = read_metrics(run)
    # four separable synthetic classes (chance 0.25); seeds 0-5 gave 0.84-1.0 on the 32 test images
    assert metrics["final"]["test/acc"] > 0.8
    assert metrics["best"]["val/acc"] >= metrics["final"]["val/acc"] - 1e-6
    best = Path(metrics["best"]["ckpt_path"])
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert metrics["best"]["tested_ckpt"] == str(best)
    manifest = json.loads((best.parent / "manifest.json").read_text())
    assert manifest["checkpoint"] == best.name
    assert manifest["class_names"] == [f"class_{i}" for i in range(4)]
    assert manifest["net"]["_target_"] == "transferlab.nets.resnet8x4"
    assert len(manifest["sha256"]) == 64
    assert summary["epochs"] == 6


def test_tensorboard_gets_the_loss_every_log_step_and_training_accuracy_once_an_epoch(fast_cfg):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = fast_cfg("logger=tensorboard", "trainer.max_epochs=2", "trainer.log_every_n_steps=3")
    summary = train(cfg)
    curves = EventAccumulator(str(Path(cfg.paths.output_dir) / "tensorboard"))
    curves.Reload()
    steps = summary["global_step"]
    assert steps >= 6
    loss = curves.Scalars("train/loss")
    assert [e.step for e in loss] == [s for s in range(steps) if (s + 1) % 3 == 0]
    assert all(0 < e.value < 10 for e in loss)
    accuracy = curves.Scalars("train/acc")
    assert len(accuracy) == 2  # one per epoch, the last the run's final training accuracy
    assert accuracy[-1].value == pytest.approx(summary["final"]["train/acc"], abs=1e-6)
    # the run's final values are the last batch's, logged whatever the cadence
    assert summary["final"]["train/loss"] > 0 and "train/acc" in summary["final"]


def test_eval_of_a_trained_checkpoint_reproduces_its_test_metric(fast_cfg, tmp_path):
    cfg = fast_cfg("trainer.max_epochs=2")
    trained = train(cfg)
    eval_cfg = compose_config([f"ckpt_path={trained['best']['ckpt_path']}"], tmp_path / "eval", "eval")
    evaluated = evaluate(eval_cfg)
    assert evaluated["final"]["test/acc"] == pytest.approx(trained["final"]["test/acc"], abs=1e-6)
    assert evaluated["final"]["test/loss"] == pytest.approx(trained["final"]["test/loss"], rel=1e-5)
    assert read_metrics(tmp_path / "eval")["final"]["test/acc"] == evaluated["final"]["test/acc"]


def test_resume_from_last_ckpt_continues_where_the_run_stopped(fast_cfg, tmp_path):
    first = fast_cfg("trainer.max_epochs=1", output_dir=tmp_path / "first")
    stopped = train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    steps_per_epoch = stopped["global_step"]
    assert saved["epoch"] == 0 and saved["global_step"] == steps_per_epoch

    resumed_cfg = fast_cfg("trainer.max_epochs=3", f"ckpt_path={last}", output_dir=tmp_path / "second")
    resumed = train(resumed_cfg)
    # two more epochs, not three: the run picked up after epoch 0
    assert resumed["global_step"] == 3 * steps_per_epoch
    assert resumed["epochs"] == 3
    final = torch.load(Path(resumed_cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["epoch"] == 2


class RecordLearningRates(Callback):
    """The first parameter group's learning rate (and weight decay) at the first step of every epoch."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, float] = {}
        self.weight_decay: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        group = trainer.optimizers[0].param_groups[0]
        self.by_epoch.setdefault(trainer.current_epoch, group["lr"])
        self.weight_decay.setdefault(trainer.current_epoch, group["weight_decay"])


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param([], marks=pytest.mark.slow),  # the default suite stays under 10 minutes
        pytest.param(["method=supervised_onecycle"], marks=pytest.mark.slow),
        ["data=digits_blended_pair", "net=cnn", "method=source_only"],
    ],
    ids=["cosine", "onecycle", "annealed"],
)
def test_a_resume_into_more_epochs_re_plans_the_schedule_for_the_new_length(fast_cfg, tmp_path, schedule):
    """Lightning restores the old plan (a cosine ending at lr 0 after epoch 1): the extra epochs
    must run at the rates of a run planned for the new length, not at the old plan's end."""
    small = (
        ["data.image_size=8", "data.batch_size=32", "+trainer.limit_train_batches=3"] if schedule[1:] else []
    )
    common = [*schedule, *small]
    straight = RecordLearningRates()
    train(fast_cfg(*common, "trainer.max_epochs=3", output_dir=tmp_path / "straight"), [straight])
    first = fast_cfg(*common, "trainer.max_epochs=1", output_dir=tmp_path / "first")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = RecordLearningRates()
    train(
        fast_cfg(*common, "trainer.max_epochs=3", f"ckpt_path={last}", output_dir=tmp_path / "b"), [resumed]
    )
    assert sorted(resumed.by_epoch) == [1, 2]
    for epoch in (1, 2):
        assert resumed.by_epoch[epoch] == pytest.approx(straight.by_epoch[epoch], rel=1e-6)
        assert resumed.by_epoch[epoch] > 0


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_a_resume_with_a_new_learning_rate_and_weight_decay_trains_with_the_new_ones(fast_cfg, tmp_path):
    """The checkpoint's optimiser state holds the old values; the resumed config's must win."""
    new = ["method.optimizer.lr=0.1", "method.optimizer.weight_decay=0.001", "trainer.max_epochs=3"]
    straight = RecordLearningRates()
    train(fast_cfg(*new, output_dir=tmp_path / "straight"), [straight])
    first = fast_cfg("method.optimizer.lr=0.02", "method.optimizer.weight_decay=0.01", "trainer.max_epochs=3")
    first.trainer.max_epochs = 1  # an interrupted run of a 3-epoch plan, with the old settings
    first.paths.output_dir = str(tmp_path / "first")
    train(first)
    resumed = RecordLearningRates()
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(fast_cfg(*new, f"ckpt_path={last}", output_dir=tmp_path / "b"), [resumed])
    for epoch in (1, 2):
        assert resumed.by_epoch[epoch] == pytest.approx(straight.by_epoch[epoch], rel=1e-6)
        assert resumed.weight_decay[epoch] == straight.weight_decay[epoch] == 0.001


def test_a_run_that_never_validated_writes_last_ckpt_and_says_so(fast_cfg, tmp_path):
    cfg = fast_cfg("trainer.max_epochs=2", "trainer.check_val_every_n_epoch=5")
    summary = train(cfg)
    run = Path(cfg.paths.output_dir)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == summary["global_step"] > 0  # the end of the run: a resume point
    metrics = read_metrics(run)
    assert metrics["validated"] is False and summary["validated"] is False
    assert metrics["best"]["tested_ckpt"] == "final weights" and "ckpt_path" not in metrics["best"]
    assert "test/acc" in metrics["final"]


def test_resume_from_a_run_directory(fast_cfg, tmp_path):
    first = fast_cfg(output_dir=tmp_path / "first")
    train(first)
    resumed = train(
        fast_cfg("trainer.max_epochs=2", f"ckpt_path={tmp_path / 'first'}", output_dir=tmp_path / "b")
    )
    assert resumed["epochs"] == 2


def test_missing_checkpoint_path_is_a_clear_error(fast_cfg, tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: ckpt_path=.*nope.ckpt; pass"):
        train(fast_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    eval_cfg = compose_config([f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path / "eval", "eval")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        evaluate(eval_cfg)


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_ddp_with_two_cpu_processes(fast_cfg):
    cfg = fast_cfg("trainer=ddp_cpu", "trainer.max_epochs=2", "data.batch_size=16")
    summary = train(cfg)
    # 116 training images, global batch 16 split over 2 ranks: each rank steps ceil(58 / 8)
    assert summary["global_step"] == 2 * 8
    assert Path(summary["best"]["ckpt_path"]).is_file()
    # the test is synced over the ranks: its accuracy is that of the whole confusion matrix
    accuracy, images = confusion_accuracy(Path(cfg.paths.output_dir))
    assert read_metrics(Path(cfg.paths.output_dir))["final"]["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert images == 32  # the synthetic test split, 8 images of 4 classes, each seen once


def test_a_gloo_process_group_is_destroyed_at_exit_while_python_is_alive(tmp_path):
    # Left to interpreter finalisation, gloo's threads sometimes abort a finished DDP worker
    # (SIGABRT); the trainer's callback registers the group's destruction as an atexit handler.
    script = f"""
import atexit, torch.distributed as dist
from transferlab.utils.distributed import GlooShutdown
dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
GlooShutdown().setup(None, None, "fit")
GlooShutdown().setup(None, None, "test")  # registers once
atexit._run_exitfuncs()
print("initialized after exit handlers:", dist.is_initialized())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "initialized after exit handlers: False" in done.stdout


def test_batch_size_that_does_not_divide_over_devices_fails_before_training(fast_cfg):
    cfg = fast_cfg("trainer=ddp_cpu", "data.batch_size=15")
    with pytest.raises(ConfigError, match=r"data.batch_size=15 .* over 2 devices"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


@pytest.mark.skipif(not (SHARED_DATA / "cifar10").is_dir(), reason="needs ../shared/data")
def test_limit_run_on_the_shared_cifar10_subset(fast_cfg):
    cfg = fast_cfg(
        "data=imagefolder",
        f"data.root={SHARED_DATA / 'cifar10'}",
        "data.classes=[ship,cat,dog]",
        "data.train_per_class=20",
        "data.batch_size=8",
        "data.num_workers=0",
        "debug=limit",
        "trainer.max_epochs=1",
    )
    summary = train(cfg)
    # 60 training images in batches of 8 is 8 batches; debug=limit stops each epoch at 5
    assert summary["global_step"] == 5
    manifest = json.loads((Path(summary["best"]["ckpt_path"]).parent / "manifest.json").read_text())
    assert manifest["class_names"] == ["ship", "cat", "dog"] and manifest["num_classes"] == 3
