"""Training cost of each domain-adaptation method relative to source-only training.

Every method trains the same net on the same pair with the same batch size; only the alignment
term differs (and source only skips the target images altogether). Images/s counts the labelled
source images of the training steps per second (from the first batch of an epoch to the end of its
last step), after ``--warmup-epochs``; ``x source only`` is the ratio of those rates, i.e. the
inverse ratio of step times. The methods are run in turn, ``--repeats`` times, so drifts in the
machine's speed hit all alike; the median is reported with the spread (min–max).

    python scripts/bench_adaptation.py                                # MNIST -> USPS, the article's CNN, CPU
    python scripts/bench_adaptation.py --experiment digits_adaptation --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["source_only", "dann", "cdan", "cdan_e", "dan", "dan_linear", "coral"]


class StepTimer(Callback):
    """Seconds of the training steps of each epoch, and the source images they saw."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.images: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self._start, self._images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += batch["source"][1].shape[0]
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self._end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(self._end - self._start)
        self.images.append(self._images)


def method_overrides(method: str) -> list[str]:
    if method == "dan_linear":
        return ["method=dan", "method.linear=true"]
    return [f"method={method}"]


def run(args: argparse.Namespace, method: str, out: Path) -> float:
    """Source images per second of one run of ``method``."""
    overrides = [
        f"experiment={args.experiment}",
        *method_overrides(method),
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "~callbacks.progress_bar",
        "logger=none",
        "test=false",
        "verbose=false",
        f"seed={args.seed}",
        *args.overrides,
    ]
    if args.limit_batches:
        overrides.append(f"+trainer.limit_train_batches={args.limit_batches}")
    timer = StepTimer()
    train(compose_config(overrides, out), extra_callbacks=[timer])
    rates = [n / s for n, s in zip(timer.images, timer.seconds, strict=True)][args.warmup_epochs :]
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="mnist_usps_adaptation")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_adaptation")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. data.batch_size=128")
    args = parser.parse_args(argv)
    if args.warmup_epochs >= args.epochs:
        parser.error(f"--epochs={args.epochs} must exceed --warmup-epochs={args.warmup_epochs}")

    rates: dict[str, list[float]] = {m: [] for m in args.methods}
    for repeat in range(args.repeats):
        for method in args.methods:
            rates[method].append(run(args, method, args.out / f"{method}_{repeat}"))
    median = {m: statistics.median(r) for m, r in rates.items()}
    baseline = median.get("source_only")
    report = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name()
        if args.accelerator == "gpu"
        else f"cpu x{torch.get_num_threads()}",
        "source_images_per_s": median,
        "ratio_to_source_only": {m: v / baseline for m, v in median.items()} if baseline else {},
        "runs": rates,
    }
    print(f"\n{'method':<14}{'images/s':>10}{'min-max':>18}{'x source only':>15}")
    for method, values in rates.items():
        ratio = f"{median[method] / baseline:>15.3f}" if baseline else ""
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"{method:<14}{median[method]:>10.1f}{spread:>18}{ratio}")
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"bench_adaptation_{args.experiment}_{args.accelerator}.json"
    target.write_text(json.dumps(report, indent=2))
    print(f"wrote {target}")
    return report


if __name__ == "__main__":
    main()
