"""Test-time adaptation's cost: images/s of each adaptation against plain evaluation.

Every arm reads the same corrupted test stream (``data=cifar10_c``, batch 200) through the same
source checkpoint; images/s counts the test images over the wall time of ``trainer.test`` (the
data already in memory). The arms run in turn, ``--repeats`` times; the median is reported with
the spread (min–max) and the ratio to plain evaluation.

    python scripts/bench_tta.py --ckpt logs/cifar10c_source/runs/<run>
    python scripts/bench_tta.py --ckpt <run> --corruption gaussian_noise --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import hydra

from transferlab.eval import test_stream
from transferlab.nets.reference import build_net
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.config import compose_config
from transferlab.utils.families import group_options

ROOT = Path(__file__).resolve().parents[1]
# plain evaluation first, then every member of conf/tta/ (a new member is timed with no edit here)
ARMS = ["none", *(m for m in group_options("tta") if m != "none")]


def rate(args: argparse.Namespace, arm: str, datamodule, checkpoint) -> float:
    """Test images per second of one pass of ``arm`` over the stream."""
    cfg = compose_config(
        [f"ckpt_path={args.ckpt}", f"tta={arm}", "trainer.enable_progress_bar=false", *args.overrides],
        args.out,
        config_name="eval",
    )
    module = hydra.utils.instantiate(cfg.tta)(build_net(checkpoint), contract=checkpoint.contract)
    trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, inference_mode=not module.needs_gradients, enable_model_summary=False
    )
    stream = test_stream(datamodule, cfg, module.batch_size, trainer.strategy.root_device)
    start = time.perf_counter()
    trainer.test(module, dataloaders=stream, verbose=False)
    return len(datamodule.datasets["test"]) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="a source checkpoint or run directory")
    parser.add_argument("--corruption", default="fog")
    parser.add_argument("--severity", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "bench_tta")
    parser.add_argument("overrides", nargs="*", help="more overrides, e.g. trainer.accelerator=gpu")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.overrides = [
        "data=cifar10_c",
        f"data.corruption={args.corruption}",
        f"data.severity={args.severity}",
        *args.overrides,
    ]
    checkpoint = open_checkpoint(args.ckpt, "--ckpt")
    cfg = compose_config([f"ckpt_path={args.ckpt}", *args.overrides], args.out, config_name="eval")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    runs: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(args.repeats):
        for arm in ARMS:  # in turn: a drift in the machine's speed hits every arm alike
            runs[arm].append(rate(args, arm, datamodule, checkpoint))
    base = statistics.median(runs["none"])
    lines = ["| adaptation | images/s | min–max | × plain evaluation |", "|---|---|---|---|"]
    for arm, values in runs.items():
        median = statistics.median(values)
        lines.append(f"| {arm} | {median:.0f} | {min(values):.0f}–{max(values):.0f} | {median / base:.3f} |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    result = {"runs": runs, "table": table, "corruption": args.corruption, "severity": args.severity}
    (args.out / "bench_tta.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
