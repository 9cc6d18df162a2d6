"""Fine-tuning in and out of distribution: full fine-tuning, the linear probe, LP-FT, LoRA, BitFit
and WiSE-FT over α, on the offline split task (five CIFAR-10 classes -> the other five, 50 target
images per class, ResNet-20), each run tested on the target's test images (ID) and on three
CIFAR-10-C corruptions of them at severity 5 (OOD: ``+shifts=cifar10c_families``).

    python scripts/finetune_shift_study.py                  # 3 seeds, every arm
    python scripts/finetune_shift_study.py --jobs 2         # two runs at once
    python scripts/finetune_shift_study.py --seeds 0 --arms full_ft lp_ft

Each arm is one Hydra multirun (``<out>/<arm>``, the command printed); WiSE-FT evaluates every LP-FT
run at α ∈ {0, 0.25, 0.5, 0.75, 1} (``python -m transferlab.eval -m ckpt_path=<run>
wise_alpha=...``: the probe's start θ_0 mixed with the fine-tuned θ_1, no retraining). Written:
``<out>/study.md``, each arm's mean ± std over seeds of the ID accuracy, each shift's and their
mean (OOD), and the per-seed values. Finished runs are kept: a relaunch completes a study.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench_common import QUIET_STUDY

ROOT = Path(__file__).resolve().parents[1]
QUIET = QUIET_STUDY
SHIFTS = ["gaussian_noise_5", "motion_blur_5", "fog_5"]
ARMS = {
    "full_ft": ["experiment=split_finetune"],
    "linear_probe": ["experiment=split_linear_probe"],
    "lp_ft": ["experiment=split_lpft"],
    "lora": [
        "experiment=split_finetune",
        "method/peft=lora",
        "method.peft.rank=4",
        "method.peft.target_modules=[conv1,conv2]",
    ],
    "bitfit": ["experiment=split_finetune", "method/peft=bitfit"],
}
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def job_seed(job: Path) -> int:
    import yaml

    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
    return int(dict(o.split("=", 1) for o in overrides if "=" in o).get("seed", 0))


def finished(sweep: Path) -> dict[int, dict]:
    """seed -> final metrics of the sweep's finished jobs."""
    return {
        job_seed(m.parent): json.loads(m.read_text())["final"] for m in sorted(sweep.glob("*/metrics.json"))
    }


def row(name: str, by_seed: dict[int, dict]) -> str:
    seeds = sorted(by_seed)

    def cell(values: list[float]) -> str:
        spread = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
        return f"{100 * statistics.fmean(values):.1f}{spread}"

    ident = [by_seed[s]["test/acc"] for s in seeds]
    shifted = {k: [by_seed[s][f"test/shift_{k}_acc"] for s in seeds] for k in SHIFTS}
    ood = [statistics.fmean(by_seed[s][f"test/shift_{k}_acc"] for k in SHIFTS) for s in seeds]
    per_seed = ", ".join(f"{100 * i:.1f}/{100 * o:.1f}" for i, o in zip(ident, ood, strict=True))
    return (
        f"| {name} | {len(seeds)} | {cell(ident)} | "
        + " | ".join(cell(shifted[k]) for k in SHIFTS)
        + f" | {cell(ood)} | {per_seed} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--jobs", type=int, default=1, help="runs of each sweep at once (launcher=joblib)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "finetune_shift")
    parser.add_argument("overrides", nargs="*", help="overrides for every run, e.g. paths.offline_data=...")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    launcher = ["launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"] if args.jobs > 1 else []
    if args.jobs > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    seeds = ",".join(map(str, args.seeds))
    train = [sys.executable, "-m", "transferlab.train", "-m"]
    for arm in args.arms:
        missing = [s for s in args.seeds if s not in finished(out / arm)]
        if missing:
            run([*train, *ARMS[arm], "+shifts=cifar10c_families", f"seed={seeds}", *QUIET, *launcher,
                 *args.overrides, f"hydra.sweep.dir={out / arm}"])  # fmt: skip
    wise: dict[float, dict[int, dict]] = {alpha: {} for alpha in ALPHAS}
    if "lp_ft" in args.arms:
        for job in sorted((out / "lp_ft").glob("*/metrics.json")):
            seed = job_seed(job.parent)
            sweep = out / "wise" / f"seed{seed}"
            if len(finished(sweep)) < len(ALPHAS):
                alphas = ",".join(map(str, ALPHAS))
                # the path quoted: a job directory's name holds '='
                run([sys.executable, "-m", "transferlab.eval", "-m", f"ckpt_path='{job.parent}'",
                     f"wise_alpha={alphas}", *launcher, f"hydra.sweep.dir={sweep}"])  # fmt: skip
            for metrics in sweep.glob("*/metrics.json"):
                record = json.loads(metrics.read_text())
                wise[float(record["wise_alpha"])][seed] = record["final"]
    header = (
        "| arm | n | ID | " + " | ".join(f"OOD {k}" for k in SHIFTS) + " | OOD mean | per seed ID/OOD |\n"
        "|---|---|---|" + "---|" * len(SHIFTS) + "---|---|"
    )
    lines = [header] + [row(arm, finished(out / arm)) for arm in args.arms if finished(out / arm)]
    lines += [row(f"WiSE-FT α={alpha:g} (LP-FT)", wise[alpha]) for alpha in ALPHAS if wise[alpha]]
    table = (
        "Test accuracy (%) on the split task's target, mean ± std over seeds: ID the 1,000 test images "
        "of its five classes, OOD the same images under three CIFAR-10-C corruptions at severity 5.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    (out / "study.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
