"""Training cost of each fine-tuning regularizer relative to plain fine-tuning (λ = 0).

Every arm fine-tunes the same net from the same source on the same images with the same batch
size; only R differs: L2-SP (a sum over the parameters), BSS (an SVD of the batch's features) and
DELTA (a second forward pass, through the frozen source backbone, and the feature-map distances).
Images/s counts the training images of an epoch's steps, after ``--warmup-epochs``; the arms run
in turn, ``--repeats`` times, and the median is reported with the spread. DELTA's channel attention
is a one-time cost at the start of fitting (not in the steps): ``--attention`` adds that arm, and
its seconds are printed.

    python scripts/bench_regularizers.py                      # split task, ResNet-20, 32 px, CPU
    python scripts/bench_regularizers.py --repeats 4 data.batch_size=128
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from bench_common import (
    StepTimer,
    add_timing_arguments,
    compare,
    fine_tuning_overrides,
    parse_timing_arguments,
)
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
DELTA = ["method/regularizer=delta", "method.regularizer.layers=['3','4','5']"]
ARMS = {
    "finetune": ["method/regularizer=none", "method.lam=0"],
    "l2sp": ["method/regularizer=l2sp", "method.lam=0.01"],
    "bss": ["method/regularizer=bss", "method.lam=0.001"],
    "delta": [*DELTA, "method.lam=0.01"],
    "delta_attention": [*DELTA, "method.regularizer.attention=true", "method.lam=0.01"],
}


class FitStartTimer(Callback):
    """Seconds from the start of fitting to the first training batch (DELTA's attention)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.start = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def run(args: argparse.Namespace, arm: str, out: Path, setup_seconds: dict[str, list[float]]) -> float:
    attention = (
        [f"method.regularizer.attention_images={args.attention_images}"] if arm == "delta_attention" else []
    )
    overrides = fine_tuning_overrides(args, [*ARMS[arm], *attention])
    timer, start = StepTimer(), FitStartTimer()
    train(compose_config(overrides, out), extra_callbacks=[timer, start])
    setup_seconds.setdefault(arm, []).append(start.seconds)
    return timer.rate(args.warmup_epochs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--experiment", default="split_finetune", help="a pipeline, or none (give pretrain=...)"
    )
    parser.add_argument(
        "--arms", nargs="+", default=[a for a in ARMS if a != "delta_attention"], choices=list(ARMS)
    )
    parser.add_argument("--attention", action="store_true", help="add DELTA with channel attention")
    parser.add_argument(
        "--attention-images", type=int, default=256, help="images DELTA's attention is measured on"
    )
    parser.add_argument("--source-epochs", type=int, default=1)
    add_timing_arguments(parser, ROOT / "logs" / "bench_regularizers", epochs=3)
    args = parse_timing_arguments(parser, argv)
    arms = [*args.arms, "delta_attention"] if args.attention else args.arms
    setup_seconds: dict[str, list[float]] = {}
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu x{torch.get_num_threads()}"
    report = compare(
        arms,
        lambda arm, repeat: run(args, arm, args.out / f"{arm}_{repeat}", setup_seconds),
        args.repeats,
        baseline="finetune",
        device=device,
        config={k: str(v) for k, v in vars(args).items()},
        out=args.out / f"bench_regularizers_{args.experiment}_{args.accelerator}.json",
        extra={"setup_seconds": setup_seconds},  # filled in by the runs before compare writes
    )
    print(
        "seconds from fit start to the first step:", {a: round(min(s), 2) for a, s in setup_seconds.items()}
    )
    return report


if __name__ == "__main__":
    main()
