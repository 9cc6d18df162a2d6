"""Training cost of each distillation recipe per step, relative to KD.

Every recipe trains the same student with the same teacher, data and batch size; only the
distillation losses differ (``conf/distill/``). Images/s counts the training images of the steps
per second after ``--warmup-epochs``; ``x kd`` is the ratio to KD's rate. The recipes are run in
turn, ``--repeats`` times; the median is reported with the spread (min–max).

    python scripts/bench_distill.py                                   # offline_distill, CPU
    python scripts/bench_distill.py --recipes kd at crd --repeats 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench_common import QUIET_RUN, StepTimer, add_timing_arguments, compare, parse_timing_arguments
from transferlab.train import train
from transferlab.utils.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ["none", "kd", "fitnets", "at", "sp", "pkt", "rkd", "dkd", "crd", "crd_kd"]


def run(args: argparse.Namespace, recipe: str, out: Path) -> float:
    """Training images per second of one run of ``recipe``."""
    overrides = [
        *([f"experiment={args.experiment}"] if args.experiment != "none" else ["method=distill"]),
        f"distill={recipe}",
        "method.teacher_input=augmented",  # the same teacher input for every recipe
        "method.cache_teacher_logits=false",  # (so nothing is cached)
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        f"++pretrain.trainer.max_epochs={args.teacher_epochs}",  # its quality does not change the cost
        f"paths.cache_dir={args.out / 'cache'}",
        *QUIET_RUN,
        *args.overrides,
    ]
    if args.limit_batches:
        overrides.append(f"+trainer.limit_train_batches={args.limit_batches}")
    timer = StepTimer()
    train(compose_config(overrides, out), extra_callbacks=[timer])
    return timer.rate(args.warmup_epochs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="offline_distill", help="none: method=distill alone")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, choices=RECIPES)
    parser.add_argument("--teacher-epochs", type=int, default=1)
    add_timing_arguments(parser, ROOT / "logs" / "bench_distill")
    args = parse_timing_arguments(parser, argv)
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu x{torch.get_num_threads()}"
    return compare(
        args.recipes,
        lambda recipe, repeat: run(args, recipe, args.out / f"{recipe}_{repeat}"),
        args.repeats,
        baseline="kd",
        device=device,
        config={k: str(v) for k, v in vars(args).items()},
        out=args.out / f"bench_distill_{args.experiment}_{args.accelerator}.json",
    )


if __name__ == "__main__":
    main()
