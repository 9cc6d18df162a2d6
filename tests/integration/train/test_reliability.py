"""Interrupted runs, atomic checkpoints, non-finite losses, typed configs, corrupt and untrusted input."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import FAST, PAIR, RunsCodeWhenUnpickled, compose_config, write_image_tree
from transferlab.callbacks.nonfinite import NonFiniteWatch
from transferlab.data.cifar import CIFAR10DataModule
from transferlab.data.imagefolder import ImageFolderDataModule
from transferlab.report.selection import read_selection
from transferlab.train import train
from transferlab.utils.checkpoint import load_checkpoint
from transferlab.utils.errors import CheckpointError, ConfigError, DataError, TrainingError
from transferlab.utils.resume import AtomicCheckpointIO
from transferlab.utils.schema import validate_config
from transferlab.validators.base import Validator

ROOT = Path(__file__).resolve().parents[3]
# long enough that a kill lands inside an epoch; deterministic, so two runs can be compared bitwise
RESUMABLE = [
    *FAST,
    "data.train_size=100",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "transferlab.train", *RESUMABLE, *extra, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
@pytest.mark.parametrize(
    "route",
    [[], ["data.on_device=false", "data.num_workers=2"]],
    ids=["resident", "streamed-from-workers"],
)
def test_a_run_killed_mid_epoch_resumes_and_ends_bitwise_like_an_uninterrupted_one(tmp_path: Path, route):
    reference = start(tmp_path / "reference", *route)
    assert reference.wait(timeout=300) == 0, reference.stderr.read().decode()[-2000:]

    killed = start(tmp_path / "killed", *route)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.is_file() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    assert killed.poll() is None, "the run ended before it could be killed"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert torch.load(last, weights_only=True)["epoch"] < 2  # it really was cut short

    resumed = start(tmp_path / "killed", *route)  # the same command again
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert b"resuming from" in err or "resuming from" in (tmp_path / "killed" / "train.log").read_text()

    final = {d: json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("reference", "killed")}
    assert final["killed"]["final"] == final["reference"]["final"]  # exact, not approximate
    assert final["killed"]["global_step"] == final["reference"]["global_step"]
    weights = {
        d: torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for d in ("reference", "killed")
    }
    assert all(torch.equal(weights["reference"][k], weights["killed"][k]) for k in weights["reference"])


def train_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "transferlab.train", *RESUMABLE, *extra]


def kill_when_checkpointed(command: list[str], checkpoints: str, root: Path) -> None:
    """Start ``command``, kill -9 it once a file matching ``checkpoints`` (under ``root``) exists."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while not list(root.glob(checkpoints)) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow  # CI runs it (.ci/run)
def test_kill_9_then_ckpt_path_last_from_the_command_line_finishes_the_run_in_its_own_directory(tmp_path):
    logs = f"paths.log_dir={tmp_path}"
    kill_when_checkpointed(train_command(logs), "train/runs/*/checkpoints/last.ckpt", tmp_path)
    (killed,) = (tmp_path / "train" / "runs").iterdir()
    assert not (killed / "metrics.json").exists()

    resumed = subprocess.run(train_command(logs, "ckpt_path=last"), cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert list((tmp_path / "train" / "runs").iterdir()) == [killed]  # one run, one directory
    assert json.loads((killed / "metrics.json").read_text())["epochs"] == 3
    log = (killed / "train.log").read_text()
    assert log.count("resuming from") == 1 and log.index("resuming from") > 0  # both attempts' lines


@pytest.mark.slow  # CI runs it (.ci/run)
def test_a_sweep_relaunched_after_a_kill_counts_each_job_once(tmp_path):
    sweep = [
        sys.executable,
        "-m",
        "transferlab.train",
        "-m",
        *RESUMABLE,
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    kill_when_checkpointed(sweep, "sweep/*/checkpoints/last.ckpt", tmp_path)
    relaunched = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True)
    assert relaunched.returncode == 0, relaunched.stderr[-2000:]
    summary = (tmp_path / "sweep" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 2 and all(",done," in line for line in summary[1:])  # two jobs, once each


class Interrupted(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way handles it."""


class EarlyBest(Validator):
    """Scores every validation lower than the one before: the first validated epoch is the pick."""

    calls = 0

    def score(self, outputs) -> float:
        EarlyBest.calls += 1
        return -float(EarlyBest.calls)


def test_a_resumed_run_stays_one_run_and_its_pick_spans_the_epochs_before_the_kill(fast_cfg, tmp_path):
    """ckpt_path=last continues the killed run in its own directory: one run.json, one
    metrics.json, one selection record per epoch, TensorBoard events of one run, and the
    validator's pick among every epoch, the one validated before the kill included."""
    from lightning.pytorch import Callback

    class Stop(Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            if trainer.current_epoch == 1:
                raise Interrupted

    runs = tmp_path / "runs"
    early_best = [f"+method.validators.early._target_={__name__}.EarlyBest", "select=early"]
    common = [*PAIR, "method=dann", "trainer.max_epochs=3", "logger=tensorboard", *early_best]
    EarlyBest.calls = 0
    with pytest.raises(Interrupted):
        train(fast_cfg(*common, output_dir=runs / "first"), extra_callbacks=[Stop()])
    assert torch.load(runs / "first" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    with pytest.raises(CheckpointError, match="ckpt_path=last: no unfinished run of this config"):
        train(fast_cfg(*common, "seed=5", "ckpt_path=last", output_dir=runs / "other"))

    resumed = train(fast_cfg(*common, "ckpt_path=last", output_dir=runs / "second"))
    assert resumed["epochs"] == 3
    assert sorted(p.name for p in runs.iterdir()) == ["first"]  # no second directory, no "other"
    run = runs / "first"
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert [r["epoch"] for r in read_selection(run)] == [0, 1, 2]
    assert Path(resumed["best"]["ckpt_path"]) == run / "checkpoints" / "epoch_000.ckpt"  # before the kill
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 2
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("val/acc")]
    assert steps == sorted(set(steps)) and len(steps) == 3  # each epoch once: one curve


def test_a_resume_from_a_finished_run_with_a_changed_length_is_a_new_run(fast_cfg, tmp_path):
    runs = tmp_path / "runs"
    train(fast_cfg("trainer.max_epochs=1", output_dir=runs / "short"))
    longer = fast_cfg("trainer.max_epochs=2", f"ckpt_path={runs / 'short'}", output_dir=runs / "longer")
    assert train(longer)["epochs"] == 2
    assert json.loads((runs / "short" / "metrics.json").read_text())["epochs"] == 1  # left as it was


def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    before = path.read_bytes()

    def dies_halfway(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(before[: len(before) // 2])
        raise Interrupted

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(Interrupted):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_a_truncated_last_checkpoint_is_refused_with_its_path(fast_cfg, tmp_path):
    cfg = fast_cfg()
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    (run_dir / "metrics.json").unlink()  # as if the run had been killed
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint {last}.*truncated"):
        train(fast_cfg())


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_terms(fast_cfg):
    cfg = fast_cfg("method.optimizer.lr=1e30")
    with pytest.raises(TrainingError, match=r"non-finite loss at step \d+ \(epoch 0\): loss=nan"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_the_watch_notes_the_first_non_finite_step_without_reading_the_device(monkeypatch):
    watch = NonFiniteWatch()
    losses = [1.0, 2.0, float("inf"), float("nan"), 0.5]

    def no_sync(*args):
        raise AssertionError("observe() read a tensor on the host")

    with monkeypatch.context() as patch:  # what a host sync would call
        for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
            patch.setattr(torch.Tensor, name, no_sync)
        for step, loss in enumerate(losses, start=10):
            watch.observe({"loss": torch.tensor(loss), "ce": torch.tensor(loss / 2)}, step)
    with pytest.raises(TrainingError, match=r"non-finite loss at step 12 \(epoch 3\): loss=inf, ce=inf;"):
        watch.check(epoch=3)


def test_the_watch_stays_quiet_on_finite_losses():
    watch = NonFiniteWatch()
    for step in range(5):
        watch.observe({"loss": torch.tensor(1e30 * step)}, step)
    watch.check(epoch=0)  # nothing to report: no error
    watch.observe({"loss": torch.tensor(-float("inf"))}, 5)
    with pytest.raises(TrainingError, match="at step 5"):
        watch.check(epoch=0)
    watch.check(epoch=0)  # read once: a later check reports only later steps


def test_the_watch_keeps_one_stacked_tensor_per_step_and_names_terms_that_change():
    watch = NonFiniteWatch()
    watch.observe({"loss": torch.tensor(1.0), "ce": torch.tensor(1.0)}, 0)
    watch.observe({"loss": torch.tensor(2.0), "ce": torch.tensor(2.0)}, 1)
    assert len(watch._pending) == 2 and watch._pending[0].shape == (2,)
    watch.observe({"ce": torch.tensor(float("nan")), "loss": torch.tensor(float("nan"))}, 2)
    with pytest.raises(TrainingError, match=r"at step 2 \(epoch 1\): ce=nan, loss=nan"):
        watch.check(epoch=1)


def test_the_loss_is_read_only_every_log_step_and_the_error_names_the_first_bad_one(fast_cfg):
    from lightning.pytorch import Callback

    batches = []

    class Count(Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            batches.append(batch_idx)

    cfg = fast_cfg("method.optimizer.lr=1e30", "trainer.log_every_n_steps=4")
    with pytest.raises(TrainingError, match=r"non-finite loss at step (\d+)") as error:
        train(cfg, extra_callbacks=[Count()])
    first = int(error.value.args[0].split("at step ")[1].split()[0])
    # the run went on to the next read, after batch 3, 7, 11, ... (callbacks see a batch first)
    assert len(batches) == (first // 4 + 1) * 4, (first, batches)
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*.ckpt"))


def test_no_checkpoint_is_written_after_a_non_finite_loss(fast_cfg):
    # validation (and its checkpoint) after 2 batches, the loss read only every 1000 batches:
    # the checkpoint write itself must find the note and refuse
    cfg = fast_cfg(
        "method.optimizer.lr=1e30", "trainer.log_every_n_steps=1000", "+trainer.val_check_interval=2"
    )
    with pytest.raises(TrainingError, match=r"non-finite loss at step [01] \(epoch 0\)"):
        train(cfg)
    assert not list((Path(cfg.paths.output_dir) / "checkpoints").glob("*"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+method.lamda=0.1",
            "method.lamda is not an option of transferlab.methods.finetune.FinetuneModule; valid options:",
        ),
        (
            "method.lam=abc",
            "method.lam='abc' has the wrong type: transferlab.methods.finetune.FinetuneModule takes float",
        ),
        ("+trainer.max_epoch=3", "trainer.max_epoch is not an option of lightning.pytorch.Trainer"),
        ("method.optimizer.lr=fast", "method.optimizer.lr='fast' has the wrong type"),
        ("data.train_per_class=1.5", "data.train_per_class=1.5 has the wrong type"),
        ("+net.depth=3", "net.depth is not an option of transferlab.nets.resnet8x4"),
    ],
)
def test_typos_and_wrong_types_fail_at_composition_listing_valid_names(tmp_path, override, message):
    cfg = compose_config([*FAST, "method=finetune", "method/regularizer=l2", override], tmp_path)
    with pytest.raises(ConfigError) as error:
        validate_config(cfg)
    assert message in str(error.value)
    if "valid options" in message:
        assert "lam" in str(error.value) and "source_ckpt" in str(error.value)


def test_a_typo_fails_before_any_data_is_read(fast_cfg, monkeypatch):
    from transferlab.data.synthetic import SyntheticDataModule

    def no_reading(*args, **kwargs):
        raise AssertionError("data was read")

    monkeypatch.setattr(SyntheticDataModule, "load_splits", no_reading)
    with pytest.raises(ConfigError, match=r"method\.lamda is not an option"):
        train(fast_cfg("+method.lamda=0.1"))


def test_an_unreadable_image_is_reported_with_its_path(tmp_path: Path):
    root = write_image_tree(tmp_path / "tree", {"a": 3, "b": 3})
    broken = root / "train" / "b" / "0001.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    data = ImageFolderDataModule(root=str(root), image_size=12, val_fraction=0.0)
    with pytest.raises(DataError, match=rf"cannot read image {broken} \(\w+Error: .+\); replace"):
        data.setup("fit")  # statistics are computed from the training images


def test_a_truncated_cifar_archive_is_caught_by_its_checksum(tmp_path: Path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + os.urandom(4096))  # the start of a gzip file, cut off
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz fails its MD5 checksum"):
        CIFAR10DataModule(root=str(tmp_path)).prepare_data()


def test_a_checkpoint_carrying_pickled_code_is_refused_and_its_code_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.ckpt"
    with open(crafted, "wb") as f:
        pickle.dump({"state_dict": {}, "payload": RunsCodeWhenUnpickled(marker)}, f)
    torch.save(
        {"state_dict": {"w": torch.ones(1)}, "payload": RunsCodeWhenUnpickled(marker)}, tmp_path / "zip.ckpt"
    )
    assert not marker.exists()
    for path in (crafted, tmp_path / "zip.ckpt"):
        with pytest.raises(CheckpointError, match=rf"refusing checkpoint {path}: it carries objects"):
            load_checkpoint(path)
    assert not marker.exists()


def test_the_contract_check_tells_another_sample_from_another_normalisation_scheme():
    from transferlab.data import CIFAR10DataModule, CIFAR100DataModule
    from transferlab.utils.contract import RunContract, check_handed

    def fed(mean, std, size=32, classes=("a", "b")) -> RunContract:
        spec = {"image_size": size, "channels": 3, "mean": list(mean), "std": list(std)}
        return RunContract(net={}, num_classes=len(classes), class_names=list(classes), inputs=spec)

    cifar10 = fed(CIFAR10DataModule.default_mean, CIFAR10DataModule.default_std)
    cifar100 = fed(CIFAR100DataModule.default_mean, CIFAR100DataModule.default_std)
    check_handed(cifar10, cifar100, "source", "method.source_ckpt=x")  # statistics of other images: fed alike
    with pytest.raises(
        CheckpointError, match=r"data.mean=\[0.4914,0.4822,0.4465\] \(this run: \[0.5,0.5,0.5\]\)"
    ):
        check_handed(cifar10, fed([0.5] * 3, [0.25] * 3), "source", "method.source_ckpt=x")
    with pytest.raises(
        CheckpointError, match=r"data.std=\[0.247,0.2435,0.2616\] \(this run: \[0.5,0.5,0.5\]\)"
    ):
        check_handed(
            cifar10, fed(CIFAR10DataModule.default_mean, [0.5] * 3), "teacher", "method.teacher_ckpt=x"
        )
    with pytest.raises(CheckpointError, match=r"data.image_size=32 \(this run: 16\)"):
        check_handed(
            cifar10, fed(CIFAR10DataModule.default_mean, CIFAR10DataModule.default_std, 16), "rank", "x"
        )
    other_classes = fed(CIFAR10DataModule.default_mean, CIFAR10DataModule.default_std, classes=("b", "a"))
    check_handed(cifar10, other_classes, "source", "x")  # a source's head is replaced
    with pytest.raises(
        CheckpointError, match=r"trained on classes \['a', 'b'\] and this run's data has \['b', 'a'\]"
    ):
        check_handed(cifar10, other_classes, "eval", "ckpt_path=x")
    unrecorded = RunContract(net={}, num_classes=2, class_names=["a", "b"])  # a checkpoint from before
    check_handed(unrecorded, fed([0.5] * 3, [0.25] * 3, 16), "teacher", "x")
