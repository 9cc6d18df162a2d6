"""What the method-cost benchmarks share: a timer of the training steps, and runs of several
arms in turn (so drifts in the machine's speed hit all alike) reported against a baseline arm."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

# what every timed run turns off: no progress bar, summary, logger, test or metric printout
#: a study's runs: no logger, no progress bar, no model summary (they still test)
QUIET_STUDY = [
    "logger=none",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "trainer.enable_model_summary=false",
]
#: a benchmark's runs: quiet, and no test (the timing is the measurement)
QUIET_RUN = [*QUIET_STUDY, "test=false", "verbose=false"]


def add_timing_arguments(parser: argparse.ArgumentParser, out: Path, epochs: int = 2) -> None:
    """The options every method-cost benchmark takes: how long each run is timed, how many times
    the arms alternate, the device, where the report goes, and overrides for every run."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. data.batch_size=128")


def parse_timing_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parser.parse_args(argv)``, refusing a run that would time no epoch."""
    args = parser.parse_args(argv)
    if args.warmup_epochs >= args.epochs:
        parser.error(f"--epochs={args.epochs} must exceed --warmup-epochs={args.warmup_epochs}")
    return args


def fine_tuning_overrides(args: argparse.Namespace, arm: list[str]) -> list[str]:
    """One fine-tuning arm of a benchmark: ``args.experiment`` (or ``method=finetune`` with the
    pretraining stage in the overrides), the arm's overrides, a short source (its quality does not
    change the cost), the timing arguments and a cache of the benchmark's own."""
    overrides = [
        *([f"experiment={args.experiment}"] if args.experiment != "none" else ["method=finetune"]),
        *arm,
        f"pretrain.trainer.max_epochs={args.source_epochs}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        *QUIET_RUN,
        f"paths.cache_dir={args.out / 'cache'}",
        *args.overrides,
    ]
    if args.limit_batches:
        overrides.append(f"+trainer.limit_train_batches={args.limit_batches}")
    return overrides


def labelled_images(batch: Any) -> int:
    """The labelled images of a training batch: ``(images, labels)``, or a domain pair's source."""
    if isinstance(batch, dict):
        return int(batch["source"][1].shape[0])
    return int(batch[1].shape[0])


class StepTimer(Callback):
    """Per epoch: seconds of the training steps (from its first batch to the end of its last step),
    seconds of the whole epoch (validation and checkpointing included), and the labelled images
    the steps saw. On a GPU the queue is drained at the epoch's start and at its last step only:
    a sync on every step would stall the pipeline being measured."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.images: list[int] = []

    @staticmethod
    def _sync(pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += labelled_images(batch)
        if batch_idx + 1 >= trainer.num_training_batches:  # the epoch's last step
            self._sync(pl_module)
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        self.seconds.append(self._end - self._start)
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.images.append(self._images)

    def rate(self, warmup_epochs: int) -> float:
        """The median images/s over the epochs after ``warmup_epochs``."""
        rates = [n / s for n, s in zip(self.images, self.seconds, strict=True)][warmup_epochs:]
        return statistics.median(rates)


def compare(
    arms: list[str],
    run: Callable[[str, int], float],
    repeats: int,
    baseline: str,
    device: str,
    config: dict[str, Any],
    out: Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``run(arm, repeat)`` -> images/s for every arm, ``repeats`` times in turn; print the table
    (median, min–max, ratio to ``baseline``) and write it, with ``extra``, to ``out`` as JSON."""
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for repeat in range(repeats):
        for arm in arms:
            rates[arm].append(run(arm, repeat))
    median = {arm: statistics.median(r) for arm, r in rates.items()}
    base = median.get(baseline)
    report = {
        "config": config,
        "device": device,
        "images_per_s": median,
        f"ratio_to_{baseline}": {arm: v / base for arm, v in median.items()} if base else {},
        "runs": rates,
        **(extra or {}),
    }
    print(f"\n{'arm':<16}{'images/s':>10}{'min-max':>18}{'x ' + baseline:>18}")
    for arm, values in rates.items():
        ratio = f"{median[arm] / base:>18.3f}" if base else ""
        print(f"{arm:<16}{median[arm]:>10.1f}{f'{min(values):.0f}-{max(values):.0f}':>18}{ratio}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return report
