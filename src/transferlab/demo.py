"""The offline main job: one source model carried three ways, with seeds, in minutes on a CPU.

``python -m transferlab.demo`` (``make demo``) trains, on scikit-learn's digits (nothing to
download), one source model — the article's CNN on all ten plain digits — once, then:

- parameter transfer: fine-tunes it on colour-blended digits with 3 labels per class, against
  training from scratch; plain fine-tuning, L2-SP and a linear probe on its frozen features
  (``experiment=digits_blended_*``);
- distillation: uses it as the teacher of a ResNet-8 student with 5 labels per class, against the
  student alone (``experiment=digits_distill``);
- domain adaptation: adapts from plain to colour-blended digits with no target labels, DANN
  against source only, both from the source model (``experiment=digits_blended_adaptation``).

Every job is an ordinary training run (``train(cfg)`` on the experiment's config) with its own
run directory and TensorBoard logs under ``logs/demo/<date>/``; the table is written there as
``results.md``, ``results.csv`` and ``results.png``. Runs are deterministic: the same command on
the same machine prints the same table. ``--quick`` runs one seed at a quarter of the epochs.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from transferlab.report import format as fmt
from transferlab.report.stats import mean_std_ci, paired_gain
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
    baseline: bool = False  # the row every other row of its family must beat


TRANSFER = "parameter transfer (plain -> blended digits, 3 labels/class)"
DISTILL = "distillation (the source CNN -> ResNet-8, 5 labels/class)"
ADAPT = "domain adaptation (plain -> blended digits, no target labels)"
L2SP_LAM = 1.0  # chosen on the validation split from {0.01, 0.1, 1, 10} (README: how)
ARMS = [
    Arm(TRANSFER, "scratch", "scratch", "digits_blended_scratch", baseline=True),
    Arm(TRANSFER, "fine-tune", "finetune", "digits_blended_finetune"),
    Arm(TRANSFER, f"L2-SP (λ={L2SP_LAM:g})", "l2sp", "digits_blended_finetune", (f"method.lam={L2SP_LAM}",)),
    Arm(TRANSFER, "linear probe", "probe", "digits_blended_linear_probe"),
    Arm(
        DISTILL,
        "student alone",
        "student",
        "digits_distill",
        ("distill=none",),
        baseline=True,
    ),
    Arm(DISTILL, "student + KD (T=4)", "kd", "digits_distill"),
    Arm(
        ADAPT,
        "source only",
        "source_only",
        "digits_blended_adaptation",
        ("method=source_only",),
        baseline=True,
    ),
    # c = 1 from the first step: Ganin's warm-up of the reversed gradient protects a feature
    # extractor that starts from random weights; this one starts from the trained source model
    Arm(ADAPT, "DANN (c=1)", "dann", "digits_blended_adaptation", ("method.schedule=fixed",)),
]
# the stage the arms build on, trained once and cached: what the table's reference line shows
STAGES = {"digits_all": "the source CNN, all ten plain digits"}
QUIET = [
    "logger=tensorboard",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.deterministic=true",
    "verbose=false",
    "feature_space.enabled=false",  # the demo's table is accuracies; the pictures cost ~15 s a run
]


def run_job(arm: Arm, seed: int, out_dir: Path, extra: list[str], epoch_scale: float) -> dict[str, Any]:
    from transferlab.train import train

    job_dir = out_dir / arm.experiment / arm.slug / f"seed{seed}"
    overrides = [f"experiment={arm.experiment}", *arm.overrides, f"seed={seed}", *QUIET, *extra]
    cfg = compose_config(overrides, job_dir)
    if epoch_scale != 1.0:  # a shortened demo: every stage, the cached one too
        cfg.trainer.max_epochs = scaled(cfg.trainer.max_epochs, epoch_scale)
        cfg.trainer.check_val_every_n_epoch = 1
        if cfg.get("pretrain"):
            cfg.pretrain.trainer.max_epochs = scaled(cfg.pretrain.trainer.max_epochs, epoch_scale)
    return train(cfg)


def scaled(epochs: int, scale: float) -> int:
    return max(1, math.ceil(epochs * scale))


def time_left(done: list[tuple[str, float]], pending: list[str]) -> float:
    """Seconds the ``pending`` jobs (by arm slug) should take: each at its arm's mean time so
    far, an arm not yet run at the mean of all jobs so far."""
    by_arm: dict[str, list[float]] = {}
    for slug, seconds in done:
        by_arm.setdefault(slug, []).append(seconds)
    overall = statistics.fmean(s for _, s in done)
    return sum(statistics.fmean(by_arm[s]) if s in by_arm else overall for s in pending)


def run_demo(seeds: int, out_dir: Path, extra: list[str], epoch_scale: float = 1.0) -> list[dict[str, Any]]:
    """Train every arm with every seed; return the table's rows."""
    jobs = [(arm, seed) for arm in ARMS for seed in range(seeds)]
    done: list[tuple[str, float]] = []
    values: dict[str, list[float]] = {}
    for index, (arm, seed) in enumerate(jobs):
        start = time.perf_counter()
        summary = run_job(arm, seed, out_dir, extra, epoch_scale)
        done.append((arm.slug, time.perf_counter() - start))
        values.setdefault(arm.slug, []).append(summary["final"]["test/acc"])
        left = time_left(done, [a.slug for a, _ in jobs[index + 1 :]])
        print(
            f"[{index + 1:2d}/{len(jobs)}] {arm.name:<20} seed {seed}  test/acc {values[arm.slug][-1]:.3f}  "
            f"{done[-1][1]:4.0f} s   about {left / 60:.1f} min left",
            flush=True,
        )
    return table_rows(values)


def table_rows(values: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Mean, std and per-seed values of every arm, and each one's gain over its family's baseline
    (paired by seed)."""
    rows = []
    baselines = {arm.family: dict(enumerate(values[arm.slug])) for arm in ARMS if arm.baseline}
    for arm in ARMS:
        vals = values[arm.slug]
        mean, std, _ = mean_std_ci(vals)
        row = {
            "family": arm.family,
            "method": arm.name,
            "mean": mean,
            "std": std,
            "values": vals,
            "baseline": arm.baseline,
        }
        if not arm.baseline:
            gain = paired_gain(dict(enumerate(vals)), baselines[arm.family])
            row["gain"], row["ahead"] = gain.mean, gain.ahead
        rows.append(row)
    return rows


def stage_accuracies(out_dir: Path) -> dict[str, float]:
    """Test accuracy of the cached source stage (the regime every method needs)."""
    found = {}
    for metrics_file in sorted((out_dir / "cache" / "pretrain").glob("*/metrics.json")):
        task = metrics_file.parent.name.rsplit("-", 1)[0]
        if task in STAGES:
            found[STAGES[task]] = json.loads(metrics_file.read_text())["final"]["test/acc"]
    return found


def markdown(rows: list[dict[str, Any]], stages: dict[str, float]) -> str:
    lines = [
        "| task | method | test accuracy (mean ± std) | gain over the baseline (seeds ahead) | seeds |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = ", ".join(fmt.number(v, 3) for v in row["values"])
        gain = (
            "baseline"
            if row["baseline"]
            else f"{100 * row['gain']:+.1f} points ({row['ahead']}/{len(row['values'])})"
        )
        accuracy = f"{fmt.number(row['mean'], 3)} ± {fmt.number(row['std'], 3)}"
        lines.append(f"| {row['family']} | {row['method']} | {accuracy} | {gain} | {seeds} |")
    for name, acc in stages.items():
        lines.append(f"| trained once (seed 0), carried three ways | {name} | {fmt.number(acc, 3)} | | |")
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict[str, Any]], stages: dict[str, float], out_dir: Path, footer: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out_dir / "results.md").write_text(markdown(rows, stages) + "\n" + footer + "\n")
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "method", "mean", "std", "gain", "values"])
        for row in rows:
            writer.writerow(
                [row["family"], row["method"], row["mean"], row["std"], row.get("gain", ""), row["values"]]
            )

    families = list(dict.fromkeys(row["family"] for row in rows))
    fig, axes = plt.subplots(1, len(families), figsize=(4.4 * len(families), 3.8), squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        members = [row for row in rows if row["family"] == family]
        xs = list(range(len(members)))
        ax.bar(
            xs,
            [m["mean"] for m in members],
            color=["#999999" if m["baseline"] else "#3a7bd5" for m in members],
            alpha=0.8,
        )
        for x, member in zip(xs, members, strict=True):
            ax.scatter([x] * len(member["values"]), member["values"], color="black", s=10, zorder=3)
        ax.set_xticks(xs, [m["method"] for m in members], rotation=15)
        low = min(min(m["values"]) for m in members)
        ax.set_ylim(max(0.0, low - 0.1), 1.0)
        ax.set_title(family.split(" (")[0])
        ax.set_ylabel("test accuracy")
    n = len(rows[0]["values"])
    fig.suptitle(f"transferlab demo on scikit-learn digits: bars = mean over {n} seed(s), dots = each seed")
    fig.tight_layout()
    fig.savefig(out_dir / "results.png", dpi=110)
    plt.close(fig)


README_BEGIN = "<!-- demo results: generated by `python -m transferlab.demo --update-readme`; do not edit -->"
README_END = "<!-- end of demo results -->"


def update_readme(results_md: Path, readme: Path) -> None:
    """Put ``results_md`` between the README's demo markers (nothing else changes)."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} has no demo-results markers ({README_BEGIN} ... {README_END})")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{results_md.read_text().strip()}\n{README_END}{tail}")


def published_gains(readme: Path) -> dict[str, float]:
    """The gain in points of every method over its baseline, as the README's demo table has it
    (empty without a README or its table)."""
    if not readme.is_file() or README_BEGIN not in readme.read_text():
        return {}
    block = readme.read_text().split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    gains = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"([+-]\d+(?:\.\d+)?) points", cells[3]) if len(cells) >= 4 else None
        if match:
            gains[cells[1]] = float(match.group(1))
    return gains


def agreement(rows: list[dict[str, Any]], published: dict[str, float]) -> str:
    """One line: whether every method's gain over its baseline has the sign the README's table
    gives it (a method ahead there is ahead here), with the gains that differ."""
    if not published:
        return "Conclusions: no published table to compare with (README.md not found)."
    differ = [
        f"{row['method']} {100 * row['gain']:+.1f} points here, {published[row['method']]:+.1f} published"
        for row in rows
        if not row["baseline"]
        and row["method"] in published
        and (row["gain"] > 0) != (published[row["method"]] > 0)
    ]
    if differ:
        return "Conclusions DIFFER from the README's table: " + "; ".join(differ) + "."
    ahead = sum(1 for row in rows if not row["baseline"] and row["gain"] > 0)
    return (
        f"Conclusions agree with the README's table: each of the {ahead} methods ahead of its baseline, "
        "as published (the gains themselves move by the spread docs/results.md gives)."
    )


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
    parser.add_argument(
        "--quick", action="store_true", help="one seed, a quarter of the epochs (under a minute)"
    )
    parser.add_argument("--epoch-scale", type=float, default=None, help="scale every stage's epochs (tests)")
    parser.add_argument("--out", type=Path, default=None, help="default: logs/demo/<date>_<time>")
    parser.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every job (e.g. trainer.accelerator=gpu)"
    )
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    epoch_scale = args.epoch_scale or (0.25 if args.quick else 1.0)
    out_dir = args.out or Path(project_root()) / "logs" / "demo" / datetime.now().strftime(
        "%Y-%m-%d_%H-%M-%S"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    quiet_logs()
    print(
        f"transferlab demo: {len(ARMS)} rows x {seeds} seed(s) on scikit-learn digits -> {out_dir}",
        flush=True,
    )
    start = time.perf_counter()
    with user_errors():
        rows = run_demo(seeds, out_dir, [f"paths.log_dir={out_dir}", *args.overrides], epoch_scale)
    seconds = time.perf_counter() - start
    stages = stage_accuracies(out_dir)
    import torch

    size = "" if epoch_scale == 1.0 else f", epochs x{epoch_scale:g}"
    footer = (
        f"`python -m transferlab.demo` ({seeds} seed(s){size}): {seconds // 60:.0f} min {seconds % 60:.0f} s "
        f"wall clock on {torch.get_num_threads()} CPU threads, {datetime.now():%Y-%m-%d}."
    )
    write_results(rows, stages, out_dir, footer)
    print()
    print(markdown(rows, stages), end="")
    print()
    print(f"done in {seconds:.0f} s. Table: {out_dir}/results.md (and .csv, .png)")
    print(f"TensorBoard: tensorboard --logdir {out_dir}")
    readme = Path(project_root()) / "README.md"
    if epoch_scale == 1.0:  # the published table is of the full demo
        print(agreement(rows, published_gains(readme)))
    if args.update_readme:
        update_readme(out_dir / "results.md", readme)
        print("README.md: results section rewritten from", out_dir / "results.md")
    return rows


if __name__ == "__main__":
    main()
