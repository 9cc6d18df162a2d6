"""Summarise sweeps: ``python -m transferlab.summarize <multirun dir> [<dir> ...] [--metric test/acc]``.

Reads each job's ``.hydra/overrides.yaml`` and ``metrics.json`` and writes, into the first
directory (or ``--out``): ``summary.csv`` (one row per job, failed ones included: the swept keys
first, then the metrics, the constant overrides last), ``summary.md`` (per combination of swept
values: n, mean ± std, each seed's value, a 95% t-interval where n ≥ 3, and where the sweep holds
its own control — λ = 0, source only, ``distill=none`` — each arm's gain over it, paired by seed) and, for
every swept parameter, a PNG of the metric against it with every seed's point. A sweep of
domain-adaptation runs also gets its model-selection report (``utils/selection.py``): each
validator's pick among every configuration × validated epoch, per seed, its regret against the
oracle and its rank correlation with the target's test accuracy. A sweep of fine-tuning runs over
sources gets each transferability score against the measured outcomes
(``transferability/outcomes.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from transferlab.transferability import outcomes
from transferlab.utils import selection
from transferlab.utils.entry import close_progress_bars, user_errors
from transferlab.utils.errors import ConfigError
from transferlab.utils.run_files import FAILED_FILE, UnreadableRecord, finished_run, read_json
from transferlab.utils.stats import mean_std_ci, paired_gain

_REPLICATES = {"seed"}
_CONTROL_WEIGHTS = ("lam",)  # a transfer term's weight λ: 0 switches it off
_CONTROL_CHOICES = {"method": "source_only", "distill": "none"}  # group=<option>: no transfer term


def read_jobs(sweep_dirs: list[Path]) -> list[dict[str, Any]]:
    """One record per job directory: its overrides, its status and its final metrics. A job whose
    records are truncated or corrupt is ``unreadable`` (its error says which file) and the rest
    are read on."""
    jobs = []
    for sweep_dir in sweep_dirs:
        for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
            job_dir = overrides_file.parent.parent
            try:
                jobs.append(read_job(job_dir, overrides_file))
            except UnreadableRecord as err:
                print(str(err), file=sys.stderr)
                overrides = {}
                with contextlib.suppress(UnreadableRecord):
                    overrides = read_overrides(overrides_file)
                jobs.append(
                    {
                        "job": str(job_dir),
                        "overrides": overrides,
                        "error": str(err),
                        "status": "unreadable",
                        "metrics": {},
                    }
                )
    return jobs


def read_overrides(path: Path) -> dict[str, str]:
    """A job's command-line overrides, ``{key: value}``."""
    try:
        listed = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UnreadableRecord(f"unreadable: {path} ({type(err).__name__})") from None
    if not isinstance(listed, list):
        raise UnreadableRecord(f"unreadable: {path} (not a list of overrides)")
    return dict(str(o).split("=", 1) for o in listed if "=" in str(o))


def read_job(job_dir: Path, overrides_file: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"job": str(job_dir), "overrides": read_overrides(overrides_file), "error": ""}
    done = finished_run(job_dir)
    failed = job_dir / FAILED_FILE
    if done is not None:
        return record | {
            "status": "done",
            "metrics": done["final"],
            "notes": done.get("notes", []),
            "reports": done.get("reports", {}),
        }
    if failed.is_file():
        error = read_json(failed)
        if not isinstance(error, dict) or "error" not in error:
            raise UnreadableRecord(f"unreadable: {failed} (no 'error')")
        return record | {"status": "failed", "metrics": {}, "error": str(error["error"])}
    # killed, still running, or crashed before it could record why
    return record | {"status": "unfinished", "metrics": {}}


def swept_keys(jobs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (absent counts as a value), seeds excluded."""
    keys = sorted({k for job in jobs for k in job["overrides"]} - _REPLICATES)
    return [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]


def is_control(key: str, value: str) -> bool:
    """An override that switches the transfer off: a weight of 0, ``method=source_only`` or
    ``distill=none``."""
    if key.rsplit(".", 1)[-1] in _CONTROL_WEIGHTS:
        try:
            return float(value) == 0.0
        except ValueError:
            return False
    return _CONTROL_CHOICES.get(key) == value


def control_key(keys: list[str], jobs: list[dict[str, Any]], control: str | None) -> tuple[str, str] | None:
    """The swept (key, value) of the sweep's own control: ``control`` ("key=value") if given,
    else the one swept key that has a control value among its values."""
    if control:
        key, _, value = control.partition("=")
        return key, value
    found = [
        (key, value)
        for key in keys
        for value in sorted({job["overrides"].get(key, "—") for job in jobs})
        if is_control(key, value)
    ]
    return found[0] if len(found) == 1 else None


def seed_of(job: dict[str, Any]) -> str:
    return job["overrides"].get("seed", "")


def group(
    jobs: list[dict[str, Any]], keys: list[str], metric: str, control: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per combination of swept values: n, failed, mean, std, ci95, each seed's value, and
    (with a control) the gain over the control row that differs only in the control key."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        groups[tuple(job["overrides"].get(k, "—") for k in keys)].append(job)
    rows = []
    for combination, members in sorted(groups.items()):
        done = sorted((j for j in members if j["status"] == "done" and metric in j["metrics"]), key=seed_of)
        by_seed = {seed_of(j): float(j["metrics"][metric]) for j in done}
        values = [float(j["metrics"][metric]) for j in done]
        mean, std, ci = mean_std_ci(values) if values else (float("nan"),) * 3
        rows.append(
            {
                **dict(zip(keys, combination, strict=True)),
                "notes": sorted({note for j in members for note in j.get("notes", [])}),
                "n": len(values),
                "failed": sum(j["status"] != "done" for j in members),
                "mean": mean,
                "std": std,
                "ci95": ci,
                "values": values,
                "by_seed": by_seed,
            }
        )
    if control:
        add_gains(rows, keys, control)
    return rows


def add_gains(rows: list[dict[str, Any]], keys: list[str], control: tuple[str, str]) -> None:
    """Each row's gain over its control row (the same values but ``control``), paired by seed:
    mean, 95% t-interval (n ≥ 3) and how many seeds are ahead. Where sweeps are combined, a key
    the control's runs did not set ("—": its default) matches any value, so ``distill=none`` is
    the control of a separate sweep over one recipe's weight; a row that would match more than
    one control gets none."""
    key, value = control
    if key not in keys:
        return
    others = [k for k in keys if k != key]
    controls = [r for r in rows if str(r[key]) == value]
    for row in rows:
        base = control_of(row, controls, others)
        if base is None or row is base:
            row["control"] = row is base
            continue
        gain = paired_gain(row["by_seed"], base["by_seed"])
        if gain is not None:
            row |= {"gain": gain.mean, "gain_ci95": gain.ci95, "ahead": gain.ahead, "pairs": gain.pairs}


def control_of(row: dict[str, Any], controls: list[dict[str, Any]], others: list[str]) -> dict | None:
    """The control row with ``row``'s values on ``others``; else the one whose values match or
    are unset ("—")."""
    values = tuple(row[k] for k in others)
    exact = [c for c in controls if tuple(c[k] for k in others) == values]
    if exact:
        return exact[0]
    loose = [c for c in controls if all(c[k] in (row[k], "—") for k in others)]
    return loose[0] if len(loose) == 1 else None


def write_csv(jobs: list[dict[str, Any]], keys: list[str], path: Path) -> None:
    """One row per job: the swept keys first, then the metrics, the constant overrides last."""
    constants = sorted({k for j in jobs for k in j["overrides"]} - set(keys))
    metric_keys = sorted({k for j in jobs for k in j["metrics"]})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", *keys, *metric_keys, "error", "notes", *constants])
        for job in jobs:
            writer.writerow(
                [
                    job["job"],
                    job["status"],
                    *(job["overrides"].get(k, "") for k in keys),
                    *(job["metrics"].get(k, "") for k in metric_keys),
                    job["error"],
                    "; ".join(job.get("notes", [])),
                    *(job["overrides"].get(k, "") for k in constants),
                ]
            )


def markdown(
    rows: list[dict[str, Any]],
    keys: list[str],
    metric: str,
    jobs: list[dict[str, Any]],
    control: tuple[str, str] | None = None,
) -> str:
    def fmt(x: float) -> str:
        return "—" if math.isnan(x) else f"{x:.4f}"

    def interval(mean: float, half: float) -> str:
        return "—" if math.isnan(half) else f"[{fmt(mean - half)}, {fmt(mean + half)}]"

    with_gain = any("gain" in r for r in rows)
    with_notes = any(r["notes"] for r in rows)
    header = [*keys, "n", "not done", f"{metric} mean ± std", "95% CI (n ≥ 3)", "per seed"]
    if with_notes:  # e.g. a fine-tuning arm that ran without a source
        header.append("note")
    if with_gain:
        header.append(f"gain over {control[0]}={control[1]}, paired by seed (95% CI; seeds ahead)")
    lines = []
    constants = sorted(
        {f"{k}={v}" for j in jobs for k, v in j["overrides"].items() if k not in {*keys, *_REPLICATES}}
    )
    if constants:
        lines += [f"constant: {', '.join(constants)}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            *(str(r[k]) for k in keys),
            str(r["n"]),
            str(r["failed"]),
            f"{fmt(r['mean'])} ± {fmt(r['std'])}",
            interval(r["mean"], r["ci95"]),
            ", ".join(f"{v:.4f}" for v in r["values"]) or "—",
        ]
        if with_notes:
            cells.append("; ".join(r["notes"]))
        if with_gain:
            if r.get("control"):
                cells.append("control")
            elif "gain" in r:
                ci = interval(r["gain"], r["gain_ci95"])
                cells.append(f"{r['gain']:+.4f} ({ci}; {r['ahead']}/{r['pairs']})")
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    problems = [j for j in jobs if j["status"] != "done"]
    if problems:
        lines += ["", f"Jobs not done ({len(problems)} of {len(jobs)}):", ""]
        lines += [f"- {j['status']}: `{j['job']}` {j['error']}".rstrip() for j in problems]
    return "\n".join(lines) + "\n"


def y_limits(values: list[float]) -> tuple[float, float] | None:
    """The y range of a rate's plot: around the values, never outside [0, 1] (None: not a rate)."""
    if not values or min(values) < 0.0 or max(values) > 1.0:
        return None
    margin = max(0.02, 0.1 * (max(values) - min(values)))
    return max(0.0, min(values) - margin), min(1.0, max(values) + margin)


def plot(rows: list[dict[str, Any]], keys: list[str], metric: str, out_dir: Path, title: str) -> list[Path]:
    """Per swept key: the mean (with its 95% t-interval where n ≥ 3) and every seed's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [v for r in rows for v in r["values"]]
    written = []
    for key in keys:
        others = [k for k in keys if k != key]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        series: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            series[tuple(r[k] for k in others)].append(r)
        ticks = list(dict.fromkeys(r[key] for r in rows))
        for number, (label, members) in enumerate(series.items()):
            offset = 0.08 * (number - (len(series) - 1) / 2)  # series side by side, not on top
            xs = [ticks.index(m[key]) + offset for m in members]
            line = ax.errorbar(
                xs,
                [m["mean"] for m in members],
                yerr=[0 if math.isnan(m["ci95"]) else m["ci95"] for m in members],
                marker="o",
                capsize=3,
                label=", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True)) or None,
            )
            for x, member in zip(xs, members, strict=True):
                ax.scatter(
                    [x] * len(member["values"]),
                    member["values"],
                    s=12,
                    alpha=0.6,
                    color=line[0].get_color(),
                    zorder=3,
                )
        ax.set_xticks(range(len(ticks)), ticks)
        limits = y_limits(values)
        if limits:
            ax.set_ylim(*limits)
        ns = sorted({r["n"] for r in rows})
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        caption = f"mean (95% CI where n ≥ 3), dots: seeds; n = {', '.join(map(str, ns))} per point"
        ax.set_title("\n".join([*textwrap.wrap(title, 70), caption]), fontsize=8)
        if others:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"summary_{metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def summarize(
    sweep_dirs: list[Path],
    metric: str = "test/acc",
    out_dir: Path | None = None,
    control: str | None = None,
    metric_key: str = "--metric {}",
) -> dict[str, Any]:
    """``control``: "key=value" of the sweep's control arm (default: found among the swept
    values, e.g. ``method.lam=0`` or ``method=source_only``). A ``metric`` no finished job has,
    or a ``control`` that is not a swept value, is refused (``metric_key``: how the user named
    the metric, a format) with those that exist."""
    jobs = read_jobs(sweep_dirs)
    if not jobs:
        raise ConfigError(f"no jobs (.hydra/overrides.yaml) under {', '.join(map(str, sweep_dirs))}")
    check_metric(jobs, metric, metric_key)
    keys = swept_keys(jobs)
    check_control(jobs, keys, control)
    found = control_key(keys, jobs, control)
    rows = group(jobs, keys, metric, found)
    out_dir = out_dir or sweep_dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, keys, out_dir / "summary.csv")
    table = markdown(rows, keys, metric, jobs, found)
    picks = selection.candidates(jobs, keys)  # adaptation runs: what each validator would pick
    if picks:
        table += "\n" + selection.markdown(picks, keys, found)
    scores = outcomes.table(jobs, keys, metric)  # a sweep over sources: the scores against it
    if scores:
        table += "\n" + outcomes.markdown(scores)
    (out_dir / "summary.md").write_text(table)
    title = " + ".join(d.name for d in sweep_dirs) + f": {metric}"
    plots = plot(rows, keys, metric, out_dir, title) if keys else []
    return {
        "jobs": jobs,
        "keys": keys,
        "rows": rows,
        "table": table,
        "plots": plots,
        "control": found,
        "selection": picks,
        "transferability": scores,
    }


def check_metric(jobs: list[dict[str, Any]], metric: str, metric_key: str = "--metric {}") -> None:
    """Refuse a metric that no finished job recorded, listing those they did."""
    recorded = sorted({name for job in jobs if job["status"] == "done" for name in job["metrics"]})
    if recorded and metric not in recorded:
        raise ConfigError(
            f"{metric_key.format(metric)}: no finished job recorded it; the metrics they have: "
            f"{', '.join(recorded)}"
        )


def check_control(jobs: list[dict[str, Any]], keys: list[str], control: str | None) -> None:
    """Refuse a ``--control key=value`` that is not one of the sweep's swept values."""
    if not control:
        return
    key, _, value = control.partition("=")
    values = {k: sorted({job["overrides"].get(k, "—") for job in jobs}) for k in keys}
    if key not in values or value not in values[key]:
        swept = "; ".join(f"{k}: {', '.join(v)}" for k, v in values.items()) or "none"
        raise ConfigError(
            f"--control {control} is not a swept value of this sweep; its swept values: {swept}"
        )


class SweepSummary(Callback):
    """A Hydra callback: at the end of a multirun, summarise its directory, print the table, and
    exit with status 1 when a job did not finish (its error is in the table and summary.csv)."""

    def __init__(self, metric: str = "test/acc") -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.glob("**/.hydra/overrides.yaml")):
            return
        close_progress_bars()  # the table and the verdict are the last lines
        with user_errors():
            result = summarize([sweep_dir], self.metric, metric_key="summary_metric={}")
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
    parser.add_argument(
        "--control", default=None, help="key=value of the control arm (default: found, e.g. method.lam=0)"
    )
    args = parser.parse_args()
    with user_errors():
        result = summarize(args.sweep_dirs, args.metric, args.out, args.control)
    print(result["table"], end="")
    out_dir = args.out or args.sweep_dirs[0]
    print(f"wrote summary.csv, summary.md and {len(result['plots'])} plot(s) in {out_dir}")


if __name__ == "__main__":
    main()
