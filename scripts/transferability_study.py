"""Do the transferability scores pick the source that fine-tunes best? Build candidate sources
offline, rank them with ``python -m transferlab.rank``, fine-tune the target from each (and from
random weights, per net) over seeds, and set the scores against the outcomes
(``python -m transferlab.summarize``).

    python scripts/transferability_study.py --target split              # the CIFAR-10 split task
    python scripts/transferability_study.py --target mnist              # MNIST 5-9, 100 per class
    python scripts/transferability_study.py --target split --seeds 0    # one seed, quicker
    python scripts/transferability_study.py --target split --jobs 2     # two fine-tuning runs at once

Each source is a ``transferlab.train`` run (in ``<out>/sources/<name>``; an existing one is
reused), varying the source classes, the net (cnn, resnet8, resnet20) and the training length.
The fine-tuning sweeps are real Hydra multiruns, one per net (a source fits only its own net),
with ``method.source_ckpt=null`` as each net's training from scratch. Written to ``<out>``:
``rank/ranking.md`` (with the seconds to score each candidate), each sweep's directory, and
``summary.md`` over all of them (the scores' weighted Kendall τ and Pearson r against the target
accuracy and against the gain over scratch, over seeds) with the seconds a fine-tuning run took.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import QUIET_STUDY

ROOT = Path(__file__).resolve().parents[1]
QUIET = QUIET_STUDY

CIFAR = ["data=imagefolder", "data.root=${paths.offline_data}/cifar10", "data.num_workers=0"]
CIFAR_NORM = ["data.mean=${stats:cifar10.mean}", "data.std=${stats:cifar10.std}"]
FIVE = "data.classes=[airplane,automobile,bird,cat,deer]"
DIGITS = ["data.image_size=16", "data.num_workers=0", "data.crop_padding=2", "data.hflip=false"]
DIGITS_NORM = ["data.mean=[0.5,0.5,0.5]", "data.std=[0.5,0.5,0.5]"]
MNIST = ["data=imagefolder", "data.root=${paths.offline_data}/mnist", *DIGITS, *DIGITS_NORM]
USPS = ["data=imagefolder", "data.root=${paths.offline_data}/usps", *DIGITS, *DIGITS_NORM]

# name -> (net, the source run's overrides): class sets, nets, short and long training
TARGETS = {
    "split": {
        "experiment": "split_sources",
        "rank_data": [
            *CIFAR,
            *CIFAR_NORM,
            "data.classes=[dog,frog,horse,ship,truck]",
            "data.train_per_class=250",
        ],
        "sources": {
            "r20_five_long": ("resnet20", [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=20"]),
            "r20_five_short": ("resnet20", [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=2"]),
            "r20_vehicles": (
                "resnet20",
                [*CIFAR, *CIFAR_NORM, "data.classes=[airplane,automobile]", "trainer.max_epochs=20"],
            ),
            "r20_animals": (
                "resnet20",
                [*CIFAR, *CIFAR_NORM, "data.classes=[bird,cat,deer]", "trainer.max_epochs=20"],
            ),
            "r8_five_long": ("resnet8", [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=20"]),
            "r8_five_short": ("resnet8", [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=2"]),
            "cnn_five_long": (
                "cnn",
                [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=20", "method.optimizer.lr=0.02"],
            ),
            "cnn_five_short": (
                "cnn",
                [*CIFAR, *CIFAR_NORM, FIVE, "trainer.max_epochs=2", "method.optimizer.lr=0.02"],
            ),
        },
    },
    "mnist": {
        "experiment": "mnist_sources",
        "rank_data": [*MNIST, 'data.classes=["5","6","7","8","9"]', "data.train_per_class=100"],
        "sources": {
            "cnn_mnist04_long": (
                "cnn",
                [*MNIST, 'data.classes=["0","1","2","3","4"]', "trainer.max_epochs=10"],
            ),
            "cnn_mnist04_short": (
                "cnn",
                [
                    *MNIST,
                    'data.classes=["0","1","2","3","4"]',
                    "+trainer.limit_train_batches=3",
                    "trainer.max_epochs=1",
                ],
            ),
            "cnn_mnist01": ("cnn", [*MNIST, 'data.classes=["0","1"]', "trainer.max_epochs=10"]),
            "cnn_usps_all": ("cnn", [*USPS, "trainer.max_epochs=10"]),
            "r8_mnist04_long": (
                "resnet8",
                [*MNIST, 'data.classes=["0","1","2","3","4"]', "trainer.max_epochs=10"],
            ),
            "r8_mnist04_short": (
                "resnet8",
                [
                    *MNIST,
                    'data.classes=["0","1","2","3","4"]',
                    "+trainer.limit_train_batches=3",
                    "trainer.max_epochs=1",
                ],
            ),
            "r8_usps_all": ("resnet8", [*USPS, "trainer.max_epochs=10"]),
            "r8_mnist01": ("resnet8", [*MNIST, 'data.classes=["0","1"]', "trainer.max_epochs=10"]),
        },
    },
}


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run(command: list[str]) -> float:
    """Run ``command`` in the project root; its wall-clock seconds."""
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def build_sources(target: dict, out: Path, offline: list[str]) -> dict[str, Path]:
    """Train each source once (a finished run directory is reused)."""
    runs = {}
    for name, (net, overrides) in target["sources"].items():
        run_dir = out / "sources" / name
        if not (run_dir / "metrics.json").is_file():
            args = [
                f"net={net}",
                "method=supervised",
                *overrides,
                *QUIET,
                *offline,
                f"hydra.run.dir={run_dir}",
            ]
            print(f"source {name}: {run(python('transferlab.train', *args)):.0f} s", flush=True)
        runs[name] = run_dir
    return runs


def fine_tune_seconds(sweep_dir: Path) -> list[float]:
    """Each finished job's seconds from claiming its directory (``run.json``, written once) to its
    ``metrics.json``: a relaunch that skips the finished jobs leaves both as they were."""
    seconds = []
    for metrics in sweep_dir.glob("*/metrics.json"):
        seconds.append(metrics.stat().st_mtime - (metrics.parent / "run.json").stat().st_mtime)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="split")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="default: logs/transferability/<target>")
    parser.add_argument("--offline-data", default=None, help="paths.offline_data (default: the config's)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="fine-tuning jobs at once (launcher=joblib; each job gets cores / jobs threads)",
    )
    args = parser.parse_args(argv)
    target = TARGETS[args.target]
    out = (args.out or ROOT / "logs" / "transferability" / args.target).resolve()
    offline = [f"paths.offline_data={args.offline_data}"] if args.offline_data else []
    sources = build_sources(target, out, offline)
    nets = {net for net, _ in target["sources"].values()}
    candidates = [str(path) for path in sources.values()] + [f"random:{net}" for net in sorted(nets)]
    rank_seconds = run(
        python(
            "transferlab.rank",
            *target["rank_data"],
            f"candidates=[{','.join(candidates)}]",
            *offline,
            f"hydra.run.dir={out / 'rank'}",
        )
    )
    launcher = ["launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"] if args.jobs > 1 else []
    if args.jobs > 1:  # each job's share of the cores, read by torch in each job (unless set already)
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    sweeps = []
    for net in sorted(nets):
        mine = [str(path) for name, path in sources.items() if target["sources"][name][0] == net]
        sweep_dir = out / f"finetune_{net}"
        sweeps.append(sweep_dir)
        run(
            python(
                "transferlab.train",
                "-m",
                f"experiment={target['experiment']}",
                f"net={net}",
                f"method.source_ckpt={','.join([*mine, 'null'])}",
                f"seed={','.join(map(str, args.seeds))}",
                *launcher,
                *QUIET,
                *offline,
                f"hydra.sweep.dir={sweep_dir}",
            )
        )
    run(python("transferlab.summarize", *map(str, sweeps), "--out", str(out)))
    seconds = [s for sweep in sweeps for s in fine_tune_seconds(sweep)]
    ranking = json.loads((out / "rank" / "ranking.json").read_text())
    timing = {
        "rank_total_seconds": round(rank_seconds, 1),
        "score_seconds_per_candidate": round(statistics.median(r["seconds"] for r in ranking), 2),
        "finetune_seconds_per_run": round(statistics.median(seconds), 1),
    }
    (out / "timing.json").write_text(json.dumps(timing, indent=2))
    print(json.dumps(timing, indent=2))
    print(
        f"the scores against the outcomes: {out / 'summary.md'}; the ranking: {out / 'rank' / 'ranking.md'}"
    )


if __name__ == "__main__":
    main()
