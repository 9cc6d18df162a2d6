"""The offline main job: every method on bundled data, measured with seeds, in minutes on a CPU.

``python -m transferlab.demo`` (``make demo``) runs, on scikit-learn's digits (nothing to
download), the whole transfer story with 3 seeds and prints one table:

- parameter transfer: source digits 0-4, target digits 5-9 with 5 labels per class —
  scratch vs fine-tune vs L2-SP (``experiment=digits_split_*``);
- distillation: a CNN teacher trained on every image into a ResNet-8 student with 5 labels per
  class — the student alone vs with the teacher (``experiment=digits_distill``);
- domain adaptation: digits -> colour-blended digits — source only vs DANN
  (``experiment=digits_adaptation``).

Each job is an ordinary training run (``train(cfg)`` on the experiment's config) with its own
run directory and TensorBoard logs under ``logs/demo/<date>/``; the table is written there as
``results.md``, ``results.csv`` and ``results.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from transferlab.utils.config import compose_config, project_root
from transferlab.utils.entry import silence_known_warnings, user_errors


@dataclass(frozen=True)
class Arm:
    """One row of the table: a method under test or its baseline, as experiment + overrides."""

    family: str
    name: str
    slug: str  # its run directories: <out>/<experiment>/<slug>/seed<k>
    experiment: str
    overrides: tuple[str, ...] = ()


TRANSFER = "parameter transfer (digits 0-4 -> 5-9, 5 labels/class)"
DISTILL = "distillation (CNN teacher -> ResNet-8, 5 labels/class)"
ADAPT = "domain adaptation (digits -> blended digits)"
ARMS = [
    Arm(TRANSFER, "scratch", "scratch", "digits_split_scratch"),
    Arm(TRANSFER, "fine-tune", "finetune", "digits_split_finetune"),
    Arm(TRANSFER, "L2-SP (λ=0.01)", "l2sp", "digits_split_finetune", ("method.lam=0.01",)),
    Arm(DISTILL, "student alone", "student", "digits_distill", ("method.lam=0",)),
    Arm(DISTILL, "student + KD (T=4)", "kd", "digits_distill"),
    Arm(ADAPT, "source only", "source_only", "digits_adaptation", ("method=source_only",)),
    Arm(ADAPT, "DANN", "dann", "digits_adaptation"),
]
# the stages the arms build on, trained once and cached: what the table's reference lines show
STAGES = {
    "digits_split_source": "source CNN, digits 0-4 (all labels)",
    "digits_teacher": "teacher CNN, all digits (all labels)",
}
QUIET = [
    "logger=tensorboard",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "verbose=false",
]


def run_job(arm: Arm, seed: int, out_dir: Path, extra: list[str], max_epochs: int | None) -> dict[str, Any]:
    from transferlab.train import train

    job_dir = out_dir / arm.experiment / arm.slug / f"seed{seed}"
    overrides = [f"experiment={arm.experiment}", *arm.overrides, f"seed={seed}", *QUIET, *extra]
    cfg = compose_config(overrides, job_dir)
    if max_epochs is not None:  # a shortened demo (tests): every stage, the cached ones too
        cfg.trainer.max_epochs = max_epochs
        cfg.trainer.check_val_every_n_epoch = 1
        if cfg.get("pretrain"):
            cfg.pretrain.trainer.max_epochs = max_epochs
    return train(cfg)


def run_demo(
    seeds: int, out_dir: Path, extra: list[str], max_epochs: int | None = None
) -> list[dict[str, Any]]:
    """Train every arm with every seed; return the table's rows."""
    rows = []
    total, done = len(ARMS) * seeds, 0
    for arm in ARMS:
        values = []
        for seed in range(seeds):
            start = time.perf_counter()
            summary = run_job(arm, seed, out_dir, extra, max_epochs)
            done += 1
            values.append(summary["final"]["test/acc"])
            print(
                f"[{done:2d}/{total}] {arm.name:<20} seed {seed}  test/acc {values[-1]:.3f}  "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        rows.append({"family": arm.family, "method": arm.name, "mean": mean, "std": std, "values": values})
    return rows


def stage_accuracies(out_dir: Path) -> dict[str, float]:
    """Test accuracy of the cached source and teacher stages (the regime each method needs)."""
    found = {}
    for metrics_file in sorted((out_dir / "cache" / "pretrain").glob("*/metrics.json")):
        task = metrics_file.parent.name.rsplit("-", 1)[0]
        if task in STAGES:
            found[STAGES[task]] = json.loads(metrics_file.read_text())["final"]["test/acc"]
    return found


def markdown(rows: list[dict[str, Any]], stages: dict[str, float]) -> str:
    lines = ["| task | method | test accuracy (mean ± std) | seeds |", "|---|---|---|---|"]
    for row in rows:
        std = "—" if row["std"] != row["std"] else f"{row['std']:.3f}"
        seeds = ", ".join(f"{v:.3f}" for v in row["values"])
        lines.append(f"| {row['family']} | {row['method']} | {row['mean']:.3f} ± {std} | {seeds} |")
    for name, acc in stages.items():
        lines.append(f"| stage trained once (seed 0) | {name} | {acc:.3f} | 0 |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict[str, Any]], stages: dict[str, float], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out_dir / "results.md").write_text(markdown(rows, stages))
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "method", "mean", "std", "values"])
        for row in rows:
            writer.writerow([row["family"], row["method"], row["mean"], row["std"], row["values"]])

    families = list(dict.fromkeys(row["family"] for row in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        members = [row for row in rows if row["family"] == family]
        xs = range(len(members))
        ax.bar(
            xs,
            [m["mean"] for m in members],
            yerr=[0 if m["std"] != m["std"] else m["std"] for m in members],
            capsize=4,
            color=["#999999"] + ["#3a7bd5"] * (len(members) - 1),
        )
        for x, member in zip(xs, members, strict=True):
            ax.scatter([x] * len(member["values"]), member["values"], color="black", s=8, zorder=3)
        ax.set_xticks(list(xs), [m["method"] for m in members], rotation=15)
        low = min(min(m["values"]) for m in members)
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
        ax.set_title(family.split(" (")[0])
        ax.set_ylabel("test accuracy")
    fig.suptitle("transferlab demo on scikit-learn digits (mean ± std over seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "results.png", dpi=110)
    plt.close(fig)


def quiet_logs() -> None:
    silence_known_warnings()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="lightning")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "transferlab"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="default: logs/demo/<date>_<time>")
    parser.add_argument("--max-epochs", type=int, default=None, help="shorten every stage (a quick check)")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every job (e.g. trainer.max_epochs=2)"
    )
    args = parser.parse_args(argv)
    out_dir = args.out or Path(project_root()) / "logs" / "demo" / datetime.now().strftime(
        "%Y-%m-%d_%H-%M-%S"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_logs()
    print(f"transferlab demo: {len(ARMS)} methods x {args.seeds} seeds on scikit-learn digits -> {out_dir}")
    start = time.perf_counter()
    with user_errors():
        rows = run_demo(args.seeds, out_dir, [f"paths.log_dir={out_dir}", *args.overrides], args.max_epochs)
    stages = stage_accuracies(out_dir)
    write_results(rows, stages, out_dir)
    print()
    print(markdown(rows, stages), end="")
    print()
    print(f"done in {time.perf_counter() - start:.0f} s. Table: {out_dir}/results.md (and .csv, .png)")
    print(f"TensorBoard: tensorboard --logdir {out_dir}")
    return rows


if __name__ == "__main__":
    main()
