"""The sweep summary: per combination of swept values, n, mean ± std, each seed's value, a 95%
t-interval where n ≥ 3 and, where the sweep holds its own control, each arm's gain over it paired
by seed; ``summary.csv`` (one row per job), ``summary.md`` (that table, then the model-selection
and transferability sections where the sweep has them) and a plot per swept key.

The control is what the runs say: each run records in ``metrics.json`` whether its method's
transfer term was off (λ = 0, source only, no distillation loss, R = 0), and the control arm is the
swept value whose runs all say so while the key's other values all say not (``--control
key=value`` names one instead).
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

from transferlab.report import feature_space, selection, shift, transferability
from transferlab.report import format as fmt
from transferlab.report.jobs import REPLICATES, Job, read_jobs, swept_keys
from transferlab.report.stats import mean_std_ci, paired_gain
from transferlab.utils.errors import ConfigError


def control_arm(keys: list[str], jobs: list[Job], control: str | None = None) -> tuple[str, str] | None:
    """The swept (key, value) of the sweep's control: ``control`` ("key=value") if given, else the
    one swept value whose finished runs all recorded their transfer term off while every other
    value of that key recorded it on; None where no key, or more than one, qualifies."""
    if control:
        key, _, value = control.partition("=")
        return key, value
    found = []
    for key in keys:
        said: dict[str, set[bool]] = defaultdict(set)
        for job in jobs:
            if job.done and job.control is not None:
                said[job.value(key)].add(bool(job.control))
        off = [value for value, flags in said.items() if flags == {True}]
        on = [value for value, flags in said.items() if flags == {False}]
        if len(off) == 1 and on and len(off) + len(on) == len(said):
            found.append((key, off[0]))
    return found[0] if len(found) == 1 else None


def group(
    jobs: list[Job], keys: list[str], metric: str, control: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per combination of swept values: n, failed, mean, std, ci95, each seed's value, and
    (with a control) the gain over the control row that differs only in the control key."""
    groups: dict[tuple[str, ...], list[Job]] = defaultdict(list)
    for job in jobs:
        groups[tuple(job.value(k) for k in keys)].append(job)
    rows = []
    for combination, members in sorted(groups.items()):
        done = sorted((j for j in members if j.done and metric in j.metrics), key=lambda j: j.seed)
        by_seed = {j.seed: float(j.metrics[metric]) for j in done}
        values = [float(j.metrics[metric]) for j in done]
        mean, std, ci = mean_std_ci(values) if values else (float("nan"),) * 3
        rows.append(
            {
                **dict(zip(keys, combination, strict=True)),
                "notes": sorted({note for j in members for note in j.notes}),
                "n": len(values),
                "failed": sum(not j.done for j in members),
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


def write_csv(jobs: list[Job], keys: list[str], path: Path) -> None:
    """One row per job: the swept keys first, then the metrics, the constant overrides last."""
    constants = sorted({k for j in jobs for k in j.overrides} - set(keys))
    metric_keys = sorted({k for j in jobs for k in j.metrics})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["job", "status", *keys, *metric_keys, "error", "notes", *constants])
        for job in jobs:
            writer.writerow(
                [
                    job.path,
                    job.status,
                    *(job.overrides.get(k, "") for k in keys),
                    *(job.metrics.get(k, "") for k in metric_keys),
                    job.error,
                    "; ".join(job.notes),
                    *(job.overrides.get(k, "") for k in constants),
                ]
            )


def markdown(
    rows: list[dict[str, Any]],
    keys: list[str],
    metric: str,
    jobs: list[Job],
    control: tuple[str, str] | None = None,
) -> str:
    with_gain = any("gain" in r for r in rows)
    with_notes = any(r["notes"] for r in rows)
    header = [*keys, "n", "not done", f"{metric} mean ± std", "95% CI (n ≥ 3)", "per seed"]
    if with_notes:  # e.g. a fine-tuning arm that ran without a source
        header.append("note")
    if with_gain:
        header.append(f"gain over {control[0]}={control[1]}, paired by seed (95% CI; seeds ahead)")
    lines = []
    constants = sorted(
        {f"{k}={v}" for j in jobs for k, v in j.overrides.items() if k not in {*keys, *REPLICATES}}
    )
    if constants:
        lines += [f"constant: {', '.join(constants)}", ""]
    cells_of = []
    for r in rows:
        cells = [
            *(str(r[k]) for k in keys),
            str(r["n"]),
            str(r["failed"]),
            f"{fmt.number(r['mean'])} ± {fmt.number(r['std'])}",
            fmt.interval(r["mean"], r["ci95"]),
            ", ".join(fmt.number(v) for v in r["values"]) or fmt.DASH,
        ]
        if with_notes:
            cells.append("; ".join(r["notes"]))
        if with_gain:
            if r.get("control"):
                cells.append("control")
            elif "gain" in r:
                ci = fmt.interval(r["gain"], r["gain_ci95"], signed=True)
                cells.append(f"{fmt.number(r['gain'], signed=True)} ({ci}; {r['ahead']}/{r['pairs']})")
            else:
                cells.append("")
        cells_of.append(cells)
    lines += fmt.table(header, cells_of)
    problems = [j for j in jobs if not j.done]
    if problems:
        lines += ["", f"Jobs not done ({len(problems)} of {len(jobs)}):", ""]
        lines += [f"- {j.status}: `{j.path}` {j.error}".rstrip() for j in problems]
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
    """``control``: "key=value" of the sweep's control arm (default: the one its runs say,
    ``control_arm``). A ``metric`` no finished job has,
    or a ``control`` that is not a swept value, is refused (``metric_key``: how the user named
    the metric, a format) with those that exist."""
    jobs = read_jobs(sweep_dirs)
    if not jobs:
        raise ConfigError(f"no jobs (.hydra/overrides.yaml) under {', '.join(map(str, sweep_dirs))}")
    check_metric(jobs, metric, metric_key)
    keys = swept_keys(jobs)
    check_control(jobs, keys, control)
    found = control_arm(keys, jobs, control)
    rows = group(jobs, keys, metric, found)
    out_dir = out_dir or sweep_dirs[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(jobs, keys, out_dir / "summary.csv")
    table = markdown(rows, keys, metric, jobs, found)
    picks = selection.candidates(jobs, keys)  # adaptation runs: what each validator would pick
    if picks:
        table += "\n" + selection.markdown(picks, keys, found)
    scores = transferability.table(jobs, keys, metric)  # a sweep over sources: the scores against it
    if scores:
        table += "\n" + transferability.markdown(scores)
    robustness = shift.table(jobs, keys, found)  # runs tested on shifted sets: ID and OOD side by side
    if robustness:
        table += "\n" + shift.markdown(robustness, keys, found)
    distances = feature_space.table(jobs, keys)  # adaptation runs: how far apart the domains' features are
    if distances:
        table += "\n" + feature_space.markdown(distances, keys)
    (out_dir / "summary.md").write_text(table)
    title = " + ".join(d.name for d in sweep_dirs) + f": {metric}"
    plots = plot(rows, keys, metric, out_dir, title) if keys else []
    if robustness:
        plots.append(shift.plot(robustness, keys, out_dir, " + ".join(d.name for d in sweep_dirs)))
    return {
        "jobs": jobs,
        "keys": keys,
        "rows": rows,
        "table": table,
        "plots": plots,
        "control": found,
        "selection": picks,
        "transferability": scores,
        "shift": robustness,
        "feature_space": distances,
    }


def check_metric(jobs: list[Job], metric: str, metric_key: str = "--metric {}") -> None:
    """Refuse a metric that no finished job recorded, listing those they did."""
    recorded = sorted({name for job in jobs if job.done for name in job.metrics})
    if recorded and metric not in recorded:
        raise ConfigError(
            f"{metric_key.format(metric)}: no finished job recorded it; the metrics they have: "
            f"{', '.join(recorded)}"
        )


def check_control(jobs: list[Job], keys: list[str], control: str | None) -> None:
    """Refuse a ``--control key=value`` that is not one of the sweep's swept values."""
    if not control:
        return
    key, _, value = control.partition("=")
    values = {k: sorted({job.value(k) for job in jobs}) for k in keys}
    if key not in values or value not in values[key]:
        swept = "; ".join(f"{k}: {', '.join(v)}" for k, v in values.items()) or "none"
        raise ConfigError(
            f"--control {control} is not a swept value of this sweep; its swept values: {swept}"
        )
