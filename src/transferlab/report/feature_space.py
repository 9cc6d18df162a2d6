"""The A-distance of each arm of a sweep (runs with ``feature_space``: every adaptation run):
how far apart a linear classifier finds the two domains' features at the start and the end of
training, mean ± std over seeds, and the change; an adaptation method that aligns the domains
lowers it where source only does not."""

from __future__ import annotations

from typing import Any

from transferlab.report import format as fmt
from transferlab.report.jobs import Job

START, END = "feature/a_distance_start", "feature/a_distance_end"


def table(jobs: list[Job], keys: list[str]) -> list[dict[str, Any]]:
    """One row per arm: the A-distance at the start and the end (rows of the sweep's grouping)."""
    from transferlab.report.sweep import group

    if not any(j.done and END in j.metrics for j in jobs):
        return []
    return [
        {**end, "start": start}
        for start, end in zip(group(jobs, keys, START), group(jobs, keys, END), strict=True)
    ]


def markdown(rows: list[dict[str, Any]], keys: list[str]) -> str:
    header = [*keys, "n", "A-distance at the start", "at the end", "change"]
    cells = [
        [
            *(str(r[k]) for k in keys),
            str(r["n"]),
            f"{fmt.number(r['start']['mean'], 3)} ± {fmt.number(r['start']['std'], 3)}",
            f"{fmt.number(r['mean'], 3)} ± {fmt.number(r['std'], 3)}",
            fmt.number(r["mean"] - r["start"]["mean"], 3, signed=True),
        ]
        for r in rows
    ]
    lines = [
        "## Feature space: A-distance",
        "",
        "The proxy A-distance 2(1 − 2ε) between the source's and the target's features (ε: the held-out "
        f"error of a linear domain classifier; 2: separable, 0: indistinguishable), `{START}` and "
        f"`{END}`, mean ± std over seeds.",
        "",
        *fmt.table(header, cells),
    ]
    return "\n".join(lines) + "\n"
