"""Training cost of each domain-adaptation method relative to source-only training, and the cost of
each validator per validation epoch.

Every method trains the same net on the same pair with the same batch size; only the alignment
term differs (and source only skips the target images altogether). Images/s counts the labelled
source images of the training steps per second (from the first batch of an epoch to the end of its
last step), after ``--warmup-epochs``; ``x source only`` is the ratio of those rates, i.e. the
inverse ratio of step times. The methods are run in turn, ``--repeats`` times, so drifts in the
machine's speed hit all alike; the median is reported with the spread (min–max). Every run also
times its validators (``method.validators``) at each validation epoch: their median seconds per
epoch over all runs are reported under ``validator_seconds``.

    python scripts/bench_adaptation.py                                # MNIST -> USPS, the article's CNN, CPU
    python scripts/bench_adaptation.py --experiment digits_adaptation --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from lightning.pytorch import Callback

from bench_common import QUIET_RUN, StepTimer, add_timing_arguments, compare, parse_timing_arguments
from transferlab.train import train
from transferlab.utils.config import compose_config
from transferlab.utils.families import family, members_of

ROOT = Path(__file__).resolve().parents[1]
ADAPTATION = family("method")
# the family's members read from conf/method/ (a new method is benchmarked with no edit here), and
# DAN's linear-time estimate beside its quadratic one
METHODS = [*members_of(ADAPTATION), "dan_linear"]


def method_overrides(method: str) -> list[str]:
    if method == "dan_linear":
        return ["method=dan", "method.linear=true"]
    return [f"method={method}"]


class ValidatorTimes(Callback):
    """Collects the seconds each validator took at each validation epoch of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def on_train_end(self, trainer, pl_module) -> None:
        for name, values in getattr(pl_module, "validator_seconds", {}).items():
            self.seconds.setdefault(name, []).extend(values)


VALIDATOR_TIMES = ValidatorTimes()


def run(args: argparse.Namespace, method: str, out: Path) -> float:
    """Source images per second of one run of ``method``."""
    overrides = [
        f"experiment={args.experiment}",
        *method_overrides(method),
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        *QUIET_RUN,
        f"seed={args.seed}",
        *args.overrides,
    ]
    if args.limit_batches:
        overrides.append(f"+trainer.limit_train_batches={args.limit_batches}")
    timer = StepTimer()
    train(compose_config(overrides, out), extra_callbacks=[timer, VALIDATOR_TIMES])
    return timer.rate(args.warmup_epochs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="mnist_usps_adaptation")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    add_timing_arguments(parser, ROOT / "logs" / "bench_adaptation")
    args = parse_timing_arguments(parser, argv)

    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"cpu x{torch.get_num_threads()}"
    out = args.out / f"bench_adaptation_{args.experiment}_{args.accelerator}.json"
    report = compare(
        args.methods,
        lambda method, repeat: run(args, method, args.out / f"{method}_{repeat}"),
        args.repeats,
        baseline="source_only",
        device=device,
        config={k: str(v) for k, v in vars(args).items()},
        out=out,
    )
    report["validator_seconds"] = {
        name: statistics.median(values) for name, values in VALIDATOR_TIMES.seconds.items() if values
    }
    out.write_text(json.dumps(report, indent=2))
    for name, seconds in report["validator_seconds"].items():
        print(f"validator {name:<12} {1000 * seconds:8.1f} ms per validation epoch (median)")
    return report


if __name__ == "__main__":
    main()
