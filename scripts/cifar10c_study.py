"""CIFAR-10-C, end to end and offline: the source model, test-time adaptation on every corruption
(a table shaped like TENT's, with TENT's numbers beside it), and domain adaptation on three
corruption families.

    python scripts/cifar10c_study.py                       # everything (hours on 2 CPU cores)
    python scripts/cifar10c_study.py --parts source tta    # the source model and the TTA table
    python scripts/cifar10c_study.py --severities 5 --seeds 0

Parts, each a real command (its multirun directory under ``--out``):
- ``source``: ``python -m transferlab.train experiment=cifar10c_source`` (ResNet-20, the offline
  CIFAR-10 subset); reused when it has finished.
- ``tta``: ``python -m transferlab.eval -m ckpt_path=<source> data=cifar10_c
  data.corruption=<all 15> data.severity=<severities> tta=bn,tent,shot_im seed=<seeds>`` (the
  seed orders the shuffled test stream) and the same with ``tta=none seed=0``, then the error
  table (``tta_table.md``).
- ``da``: ``python -m transferlab.train -m experiment=cifar10c_adaptation
  method=source_only,dann,<--da-method> data.target.corruption=<one per family> seed=<seeds>
  ~pretrain method.source_ckpt=<source>`` (the experiment's pretraining stage is the same recipe
  as ``source``: the study trains it once), then ``python -m transferlab.summarize`` on that sweep
  (``da/summary.md``: each method's mean ± std per corruption and its gain over source only,
  paired by seed).

``--jobs N`` runs N jobs of each sweep at once (``launcher=joblib``), each with cores / N threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from transferlab.data.corruptions import CORRUPTIONS  # noqa: E402

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
TRAIN_QUIET = ["logger=none", "~callbacks.progress_bar", *QUIET]
ARMS = ["none", "bn", "tent", "shot_im"]
# the TENT README's CIFAR-10-C table (WRN-28-10, severity 5, error %): source, BN, TENT
TENT = {
    "none": [72.3, 65.7, 72.9, 46.9, 54.3, 34.8, 42.0, 25.1, 41.3, 26.0, 9.3, 46.7, 26.6, 58.5, 30.3],
    "bn": [28.1, 26.1, 36.3, 12.8, 35.3, 14.2, 12.1, 17.3, 17.4, 15.3, 8.4, 12.6, 23.8, 19.7, 27.3],
    "tent": [24.8, 23.5, 33.0, 12.0, 31.8, 13.7, 10.8, 15.9, 16.2, 13.7, 7.9, 12.1, 22.0, 17.3, 24.2],
}
TENT_MEAN = {"none": 43.5, "bn": 20.4, "tent": 18.6}
ABBREVIATIONS = [
    "gauss",
    "shot",
    "impul",
    "defoc",
    "glass",
    "motn",
    "zoom",
    "snow",
    "frost",
    "fog",
    "brit",
    "contr",
    "elast",
    "pixel",
    "jpeg",
]
FAMILY_PICKS = ["gaussian_noise", "motion_blur", "fog"]  # one corruption of three families


def run(command: list[str]) -> None:
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def read_errors(sweep: Path) -> dict[tuple[str, int, str], dict[int, float]]:
    """(corruption, severity, adaptation) -> {seed of the stream order: test error %}, from the
    sweep's jobs."""
    errors: dict[tuple[str, int, str], dict[int, float]] = defaultdict(dict)
    for metrics in sorted(sweep.glob("*/metrics.json")):
        overrides = dict(
            o.split("=", 1)
            for o in yaml.safe_load((metrics.parent / ".hydra" / "overrides.yaml").read_text())
        )
        key = (overrides["data.corruption"], int(overrides["data.severity"]), overrides["tta"])
        seed = int(overrides.get("seed", 0))
        errors[key][seed] = 100 * (1 - json.loads(metrics.read_text())["final"]["test/acc"])
    return errors


def mean_error(errors: dict, severity: int | list[int], arm: str) -> tuple[float, float | None]:
    """The mean error over the 15 corruptions (and over the severities, given a list), averaged
    over the stream seeds, and its standard deviation across the seeds (None with one seed)."""
    severities = [severity] if isinstance(severity, int) else list(severity)
    cells = [(c, s, arm) for c in CORRUPTIONS for s in severities]
    seeds = sorted(set.intersection(*(set(errors.get(cell, {})) for cell in cells)))
    if not seeds:
        return float("nan"), None
    per_seed = [statistics.fmean(errors[cell][seed] for cell in cells) for seed in seeds]
    return statistics.fmean(per_seed), statistics.stdev(per_seed) if len(per_seed) > 1 else None


def tta_table(errors: dict, severities: list[int], clean_acc: float) -> str:
    lines = [
        f"Test error (%) of the source model (clean test accuracy {clean_acc:.3f}) on CIFAR-10-C at "
        "severity 5, mean over the seeds of the stream order (the mean column: ± its standard deviation "
        "across those seeds); TENT's row (WRN-28-10, the full CIFAR-10) below each of ours.",
        "",
        "| method | " + " | ".join(ABBREVIATIONS) + " | mean |",
        "|---|" + "---|" * (len(ABBREVIATIONS) + 1),
    ]
    for arm in ARMS:
        cells = [statistics.fmean(errors.get((c, 5, arm), {0: float("nan")}).values()) for c in CORRUPTIONS]
        mean, spread = mean_error(errors, 5, arm)
        lines.append(
            f"| {arm} (ours) | "
            + " | ".join(f"{v:.1f}" for v in cells)
            + f" | {mean:.1f}{'' if spread is None else f' ± {spread:.1f}'} |"
        )
        if arm in TENT:
            lines.append(
                f"| {arm} (TENT) | "
                + " | ".join(f"{v:.1f}" for v in TENT[arm])
                + f" | {TENT_MEAN[arm]:.1f} |"
            )
    if len(severities) > 1:
        lines += [
            "",
            f"Mean error (%) over the 15 corruptions at each severity ({', '.join(map(str, severities))}); "
            "the mean column over the severities too, ± its standard deviation across the stream seeds:",
            "",
        ]
        lines += [
            "| method | " + " | ".join(f"s{s}" for s in severities) + " | mean |",
            "|---|" + "---|" * (len(severities) + 1),
        ]
        for arm in ARMS:
            means = [mean_error(errors, s, arm)[0] for s in severities]
            overall, spread = mean_error(errors, severities, arm)
            lines.append(
                f"| {arm} | "
                + " | ".join(f"{v:.1f}" for v in means)
                + f" | {overall:.1f}{'' if spread is None else f' ± {spread:.1f}'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--parts", nargs="+", default=["source", "tta", "da"], choices=["source", "tta", "da"]
    )
    parser.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--da-method", default="mcc", help="the third adaptation method (the model-selection table's best)"
    )
    parser.add_argument(
        "--da-epochs", type=int, default=5, help="the adaptation runs' epochs (the experiment's: 5)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="jobs of each sweep at once (launcher=joblib; cores / jobs threads each)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "cifar10c_study")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. paths.offline_data=...")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    source = out / "source"
    seeds = ",".join(map(str, args.seeds))
    launcher = ["launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"] if args.jobs > 1 else []
    if args.jobs > 1:  # each job's share of the cores, read by torch in each job (unless set already)
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    trained = (source / "metrics.json").is_file()
    if not trained and "source" not in args.parts:
        parser.error(f"no finished source model in {source}: run the study with --parts source first")
    if "source" in args.parts and not trained:
        run(
            [
                sys.executable,
                "-m",
                "transferlab.train",
                "experiment=cifar10c_source",
                *TRAIN_QUIET,
                *args.overrides,
                f"hydra.run.dir={source}",
            ]
        )
    if "tta" in args.parts:
        # the source model's error does not depend on the stream's order: one seed for it
        for arms, arm_seeds, sweep in (
            ("none", "0", out / "tta_none"),
            ("bn,tent,shot_im", seeds, out / "tta"),
        ):
            run(
                [
                    sys.executable, "-m", "transferlab.eval", "-m", f"ckpt_path={source}", "data=cifar10_c",
                    f"data.corruption={','.join(CORRUPTIONS)}",
                    f"data.severity={','.join(map(str, args.severities))}",
                    f"tta={arms}", f"seed={arm_seeds}", *launcher, *QUIET, *args.overrides,
                    f"hydra.sweep.dir={sweep}",
                ]
            )  # fmt: skip
        clean = json.loads((source / "metrics.json").read_text())["final"]["test/acc"]
        errors = read_errors(out / "tta_none") | read_errors(out / "tta")
        table = tta_table(errors, args.severities, clean)
        (out / "tta_table.md").write_text(table)
        print(table)
    if "da" in args.parts:
        run(
            [
                sys.executable, "-m", "transferlab.train", "-m", "experiment=cifar10c_adaptation",
                f"method=source_only,dann,{args.da_method}",
                f"data.target.corruption={','.join(FAMILY_PICKS)}",
                f"seed={seeds}", f"trainer.max_epochs={args.da_epochs}",
                "~pretrain", f"method.source_ckpt={source}",
                *launcher, *TRAIN_QUIET, *args.overrides, f"hydra.sweep.dir={out / 'da'}",
            ]
        )  # fmt: skip
        run([sys.executable, "-m", "transferlab.summarize", str(out / "da")])
        print((out / "da" / "summary.md").read_text())


if __name__ == "__main__":
    main()
