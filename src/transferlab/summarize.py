"""Summarise sweeps: ``python -m transferlab.summarize <multirun dir> [<dir> ...] [--metric test/acc]``.

Reads each job's ``.hydra/overrides.yaml`` and ``metrics.json`` and writes, into the first
directory (or ``--out``): ``summary.csv`` (one row per job, failed ones included), ``summary.md``
(mean ± std and a 95% confidence interval over seeds, per combination of swept values) and, for
every swept parameter, a PNG of the metric against it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from transferlab.utils.run_files import FAILED_FILE, finished_run

# two-sided 95% Student t quantiles by degrees of freedom (1.96 beyond the table)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
_REPLICATES = {"seed"}


def read_jobs(sweep_dirs: list[Path]) -> list[dict[str, Any]]:
    """One record per job directory: its overrides, its status and its final metrics."""
    jobs = []
    for sweep_dir in sweep_dirs:
        for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
            job_dir = overrides_file.parent.parent
            overrides = dict(o.split("=", 1) for o in yaml.safe_load(overrides_file.read_text()) if "=" in o)
            record: dict[str, Any] = {"job": str(job_dir), "overrides": overrides, "error": ""}
            done = finished_run(job_dir)
            failed = job_dir / FAILED_FILE
            if done is not None:
                record |= {"status": "done", "metrics": done["final"]}
            elif failed.is_file():
                record |= {
                    "status": "failed",
                    "metrics": {},
                    "error": json.loads(failed.read_text())["error"],
                }
            else:  # killed, still running, or crashed before it could record why
                record |= {"status": "unfinished", "metrics": {}}
            jobs.append(record)
    return jobs


def swept_keys(jobs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (absent counts as a value), seeds excluded."""
    keys = sorted({k for job in jobs for k in job["overrides"]} - _REPLICATES)
    return [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]


def mean_std_ci(values: list[float]) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    std = statistics.stdev(values)
    return mean, std, _T95.get(len(values) - 1, 1.96) * std / math.sqrt(len(values))


def group(jobs: list[dict[str, Any]], keys: list[str], metric: str) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        groups[tuple(job["overrides"].get(k, "—") for k in keys)].append(job)
    rows = []
    for combination, members in sorted(groups.items()):
        values = [j["metrics"][metric] for j in members if j["status"] == "done" and metric in j["metrics"]]
        mean, std, ci = mean_std_ci(values) if values else (float("nan"),) * 3
        failed = sum(j["status"] != "done" for j in members)
        rows.append(
            {
                **dict(zip(keys, combination, strict=True)),
                "n": len(values),
                "failed": failed,
                "mean": mean,
                "std": std,
                "ci95": ci,
            }
        )
    return rows


def write_csv(jobs: list[dict[str, Any]], path: Path) -> None:
    override_keys = sorted({k for j in jobs for k in j["overrides"]})
    metric_keys = sorted({k for j in jobs for k in j["metrics"]})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", "error", *override_keys, *metric_keys])
        for job in jobs:
            writer.writerow(
                [
                    job["job"],
                    job["status"],
                    job["error"],
                    *(job["overrides"].get(k, "") for k in override_keys),
                    *(job["metrics"].get(k, "") for k in metric_keys),
                ]
            )


def markdown(rows: list[dict[str, Any]], keys: list[str], metric: str, jobs: list[dict[str, Any]]) -> str:
    def fmt(x: float) -> str:
        return "—" if math.isnan(x) else f"{x:.4f}"

    header = [*keys, "n", "not done", f"{metric} mean ± std", "95% CI"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        ci = "—" if math.isnan(r["ci95"]) else f"[{fmt(r['mean'] - r['ci95'])}, {fmt(r['mean'] + r['ci95'])}]"
        lines.append(
            "| "
            + " | ".join(
                [
                    *(str(r[k]) for k in keys),
                    str(r["n"]),
                    str(r["failed"]),
                    f"{fmt(r['mean'])} ± {fmt(r['std'])}",
                    ci,
                ]
            )
            + " |"
        )
    problems = [j for j in jobs if j["status"] != "done"]
    if problems:
        lines += ["", f"Jobs not done ({len(problems)} of {len(jobs)}):", ""]
        lines += [f"- {j['status']}: `{j['job']}` {j['error']}".rstrip() for j in problems]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], keys: list[str], metric: str, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key in keys:
        others = [k for k in keys if k != key]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        series: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            series[tuple(r[k] for k in others)].append(r)
        for label, members in series.items():
            xs = [m[key] for m in members]
            ax.errorbar(
                range(len(xs)),
                [m["mean"] for m in members],
                yerr=[0 if math.isnan(m["ci95"]) else m["ci95"] for m in members],
                marker="o",
                capsize=3,
                label=", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True)) or None,
            )
            ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric} (mean, 95% CI)")
        if others:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"summary_{metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def summarize(
    sweep_dirs: list[Path], metric: str = "test/acc", out_dir: Path | None = None
) -> dict[str, Any]:
    jobs = read_jobs(sweep_dirs)
    if not jobs:
        raise SystemExit(f"error: no jobs (.hydra/overrides.yaml) under {', '.join(map(str, sweep_dirs))}")
    keys = swept_keys(jobs)
    rows = group(jobs, keys, metric)
    out_dir = out_dir or sweep_dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, out_dir / "summary.csv")
    table = markdown(rows, keys, metric, jobs)
    (out_dir / "summary.md").write_text(table)
    plots = plot(rows, keys, metric, out_dir) if keys else []
    return {"jobs": jobs, "keys": keys, "rows": rows, "table": table, "plots": plots}


class SweepSummary(Callback):
    """A Hydra callback: at the end of a multirun, summarise its directory, print the table, and
    exit with status 1 when a job did not finish (its error is in the table and summary.csv)."""

    def __init__(self, metric: str = "test/acc") -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.glob("**/.hydra/overrides.yaml")):
            return
        result = summarize([sweep_dir], self.metric)
        print(result["table"], end="")
        print(f"sweep summary: {sweep_dir}/summary.md, summary.csv and {len(result['plots'])} plot(s)")
        not_done = [j for j in result["jobs"] if j["status"] != "done"]
        if not_done:
            print(
                f"error: {len(not_done)} of {len(result['jobs'])} jobs did not finish (listed above)",
                file=sys.stderr,
            )
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path)
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = summarize(args.sweep_dirs, args.metric, args.out)
    print(result["table"], end="")
    out_dir = args.out or args.sweep_dirs[0]
    print(f"wrote summary.csv, summary.md and {len(result['plots'])} plot(s) in {out_dir}")


if __name__ == "__main__":
    main()
