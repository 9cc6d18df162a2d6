"""Shared fixtures: compose the real configs, shrink them, build data in real on-disk formats."""

from __future__ import annotations

import importlib.util
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytest
import torch
from omegaconf import DictConfig, open_dict
from PIL import Image

from transferlab.methods.adaptation.base import AdversarialAdaptationModule
from transferlab.utils.config import compose_config as compose_train_config
from transferlab.utils.families import family, members_of, target_of

# pytest-xdist's workers share the machine's cores: a torch process per worker on every core
# would make their OpenMP threads spin against each other (each training several times slower).
# Each worker gets its share, and so do the processes its tests start (OMP_NUM_THREADS).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]  # the checkout
SCRIPTS = ROOT / "scripts"


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m transferlab.<module> <args>`` from the project root, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", f"transferlab.{module}", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=SCRIPTS.parent,
        timeout=300,
    )


def load_script(name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``scripts/<name>.py`` as a module, importing its neighbours as ``python scripts/<name>.py``
    does (the scripts directory first on ``sys.path``)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# A run that is quick on two CPU cores: synthetic data, a small net, no progress bar.
FAST = [
    "data=synthetic",
    "data.image_size=16",
    "net=resnet8x4",
    "trainer.max_epochs=1",
    "logger=none",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "feature_space.enabled=false",  # measured by its own tests (integration/train/test_feature_space.py)
]


# A command line that is quick on two CPU cores on real data: scikit-learn's digits, the
# article's CNN, one epoch, no logger or progress bar (for tests that launch subprocesses).
DIGITS_CLI = [
    "data=digits",
    "net=cnn",
    "trainer.max_epochs=1",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
]


# Domain adaptation, quick: scikit-learn digits -> colour-blended digits at 16 px, a few batches.
PAIR = [
    "data=digits_blended_pair",
    "net=resnet8",
    "data.image_size=16",
    "data.batch_size=32",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=2",
    "method.optimizer.lr=0.05",
]
ADAPTATION = family("method")
# every adaptation method with an alignment term: the family's members from conf/method/, less the baseline
ALIGNING = [m for m in members_of(ADAPTATION) if m != "source_only"]
DETERMINISTIC = ["trainer.deterministic=true", "data.target.crop_padding=0"]


def deterministic_discriminator(method: str) -> list[str]:
    """Adversarial methods: no dropout in the adversary (d, or MDD's head), and c = 1 from the
    first step (no warm-up); read from the method's class, not a list of names."""
    cls = hydra.utils.get_class(target_of("method", method))
    if not issubclass(cls, AdversarialAdaptationModule):
        return []
    keys = inspect.signature(cls).parameters
    dropout = "head_dropout" if "head_dropout" in keys else "discriminator_dropout"
    return [f"method.{dropout}=0", "method.schedule=fixed"]


def final_weights(summary: dict) -> dict[str, torch.Tensor]:
    """The state dict of a finished run's last checkpoint."""
    return torch.load(summary["best"]["last_ckpt_path"], weights_only=True)["state_dict"]


def confusion_accuracy(run_dir: Path) -> tuple[float, int]:
    """(the diagonal share, the image count) of the ``confusion_matrix.csv`` a run's test wrote."""
    import csv

    with open(Path(run_dir) / "confusion_matrix.csv") as f:
        rows = [[int(v) for v in row[1:]] for row in list(csv.reader(f))[1:]]
    total = sum(map(sum, rows))
    return sum(rows[i][i] for i in range(len(rows))) / total, total


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def build_module(cfg: DictConfig) -> tuple[Any, Any]:
    """(the method's LightningModule, its set-up datamodule), as ``train`` builds them."""
    from transferlab.train import build_model

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    return build_model(cfg, datamodule), datamodule


def at_step(module, epoch: int, step: int, steps: int, per_epoch: int):
    """``module`` as Lightning's trainer shows it at ``epoch`` and ``step`` of a run of ``steps``
    steps, ``per_epoch`` an epoch (this instance alone: the method's class is untouched)."""

    class Trainer:  # what the schedule reads of Lightning's trainer
        estimated_stepping_batches = steps
        num_training_batches = per_epoch

    module._trainer = Trainer()
    base = type(module).__mro__[1] if type(module).__name__ == "At" else type(module)
    at = {"current_epoch": property(lambda self: epoch), "global_step": property(lambda self: step)}
    module.__class__ = type("At", (base,), at)
    return module


def with_overrides(base: list[str], *overrides: str) -> list[str]:
    """``base`` then ``overrides``, where an override replaces ``base``'s entry for the same key
    (so a job's recorded overrides hold each key once)."""
    given = {o.split("=")[0] for o in overrides}
    return [o for o in base if o.split("=")[0] not in given] + list(overrides)


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """The real composed config, writing under ``output_dir`` (datasets too, never to the repo)."""
    cfg = compose_train_config(overrides, output_dir, config_name)
    with open_dict(cfg):
        cfg.paths.data_dir = str(output_dir / "data")
        cfg.paths.log_dir = str(output_dir / "logs")  # the source cache lives under it
    return cfg


@pytest.fixture
def fast_cfg(tmp_path: Path):
    """``fast_cfg(*overrides)`` -> a shrunk train config writing under ``tmp_path``."""

    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_config([*FAST, *overrides], output_dir or tmp_path / "run")

    return make


class RunsCodeWhenUnpickled:
    """A crafted checkpoint payload: unpickling it would run code (it writes ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def write_image_tree(root: Path, classes: dict[str, int], splits=("train", "test"), size=12) -> Path:
    """A real ImageFolder tree of PNG files: ``classes`` maps a name to images per split."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label, (name, count) in enumerate(classes.items()):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (size, size, 3)) + 40 * label
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


def write_benchmark(
    root: Path, benchmark: str, per_class: int | dict[str, int] = 1, domains: list[str] | None = None, size=12
) -> Path:
    """A published adaptation benchmark's tree in the reference library's layout (every class of
    it; ``per_class`` images per class and list, or per domain): ``<root>/image_list/<list>.txt``
    of ``<path> <label>`` lines and the JPEG images they name, grouped in class folders."""
    from transferlab.data.benchmarks import BENCHMARKS

    spec = BENCHMARKS[benchmark]
    rng = np.random.default_rng(0)
    (root / "image_list").mkdir(parents=True, exist_ok=True)
    for name in domains or list(spec.domains):
        domain = spec.domains[name]
        count = per_class[name] if isinstance(per_class, dict) else per_class
        middle = "images/" if benchmark == "office31" else ""
        for list_name in sorted(set(domain.lists.values())):
            lines = []
            for label in range(spec.classes):
                folder = root / domain.folder / middle / f"class_{label:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    path = folder / f"{Path(list_name).stem}_{i:04d}.jpg"
                    if not path.exists():
                        pixels = rng.integers(0, 60, (size, size, 3)) + (label * 7) % 190
                        Image.fromarray(pixels.astype(np.uint8)).save(path)
                    lines.append(f"{path.relative_to(root)} {label}")
            (root / "image_list" / list_name).write_text("\n".join(lines) + "\n")
    return root


def write_cifar10(root: Path, per_class_train: int = 6, per_class_test: int = 3) -> Path:
    """CIFAR-10 in torchvision's python format (pickled batches), small but real-format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    rng = np.random.default_rng(0)

    def batch(per_class: int) -> dict:
        labels = np.repeat(np.arange(10), per_class)
        data = rng.integers(0, 255, (len(labels), 3072), dtype=np.uint8)
        return {"data": data, "labels": labels.tolist()}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_class_train // 5 or 1), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(per_class_test), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    return root


def write_cifar100(root: Path, per_class_train: int = 2, per_class_test: int = 1) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"class{i:03d}" for i in range(100)]
    rng = np.random.default_rng(0)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = np.repeat(np.arange(100), per_class)
        data = rng.integers(0, 255, (len(labels), 3072), dtype=np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist()}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": names}, f)
    return root


@pytest.fixture
def skip_cifar_checksums(monkeypatch):
    """Test archives (CIFAR, STL-10) are real-format but not the official bytes: check presence, not md5."""
    from torchvision.datasets import cifar, stl10

    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    # STL-10's unlabelled split is not written by the tests (no method here reads it)
    monkeypatch.setattr(
        stl10, "check_integrity", lambda path, md5=None: Path(path).is_file() or "unlabeled" in str(path)
    )


def write_mnist(root: Path, per_class: int = 3) -> Path:
    """MNIST's raw IDX files (the format torchvision reads), with random digits."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        labels = np.repeat(np.arange(10), per_class).astype(np.uint8)
        images = rng.integers(0, 255, (len(labels), 28, 28), dtype=np.uint8)
        header = np.array([0x803, len(labels), 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            np.array([0x801, len(labels)], dtype=">i4").tobytes() + labels.tobytes()
        )
    return root


def write_usps(root: Path, per_class: int = 3) -> Path:
    """USPS as torchvision reads it: bz2-compressed libsvm lines, labels 1..10, pixels in [-1, 1]."""
    import bz2

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("usps.bz2", "usps.t.bz2"):
        lines = []
        for label in np.repeat(np.arange(10), per_class):
            pixels = rng.uniform(-1, 1, 256)
            lines.append(f"{label + 1} " + " ".join(f"{i + 1}:{v:.4f}" for i, v in enumerate(pixels)))
        (root / name).write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return root


def write_stl10(root: Path, per_class: int = 2) -> Path:
    """STL-10's binary files (labels 1..10, images 3x96x96 column-major)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        labels = np.repeat(np.arange(1, 11), per_class).astype(np.uint8)
        (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
        (folder / f"{split}_X.bin").write_bytes(
            rng.integers(0, 255, len(labels) * 3 * 96 * 96, dtype=np.uint8).tobytes()
        )
    return root


# --- entry points run as their own processes, forked from one that imported them once ---------
ENTRY_MODULES = ("train", "eval", "rank", "summarize", "data.prepare")


def run_entry(module: str, args: list[str], stderr_path: str, cwd: str) -> None:
    """In a child process: ``python -m transferlab.<module> *args``,
    with stderr to ``stderr_path`` and stdout discarded; exits with the status it ends with (an
    uncaught exception prints its traceback there and exits 1, as the interpreter would), also
    written to ``<stderr_path>.status``."""
    import runpy
    import traceback
    import warnings

    os.chdir(cwd)
    os.environ["PYTHONWARNINGS"] = "ignore"
    warnings.simplefilter("ignore")  # as PYTHONWARNINGS=ignore does at a fresh interpreter's start
    err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(err, 2)
    os.dup2(out, 1)
    sys.argv = [f"transferlab/{module}.py", *args]
    code = 0
    try:  # as `python -m` runs it: the module's code as __main__ (its imports are already loaded)
        runpy.run_module(f"transferlab.{module}", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # the status also in a file: a forkserver's client now and then reads 255 for a child that
    # exited normally (it lost the server's report), which would make a test flaky
    Path(f"{stderr_path}.status").write_text(str(code))
    os._exit(code)


def entry_runner():
    """A process context whose children fork from a server that imported every entry point once
    (about 6 s of imports each, paid once): ``run_entry`` in each child."""
    import multiprocessing
    import warnings
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([f"transferlab.{m}" for m in ENTRY_MODULES])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forkserver.ensure_running()  # once, before any thread starts children
    return context
