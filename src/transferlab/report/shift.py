"""In- and out-of-distribution accuracy of a sweep (runs with ``data.shifted_tests``): each arm's
test accuracy and its accuracy on every shifted test set side by side, each with its gain over
the control arm paired by seed, and the plot the robustness papers draw (OOD against ID accuracy,
one point an arm; Taori et al., 2020; Kumar et al., 2022; Wortsman et al., 2022)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from transferlab.report import format as fmt
from transferlab.report.jobs import Job

ID_METRIC = "test/acc"
SHIFTED = re.compile(r"^test/shift_(.+)_acc$")


def shifts(jobs: list[Job]) -> list[str]:
    """The shifted test sets the finished jobs were tested on, by name."""
    return sorted({m.group(1) for j in jobs if j.done for k in j.metrics if (m := SHIFTED.match(k))})


def table(jobs: list[Job], keys: list[str], control: tuple[str, str] | None) -> list[dict[str, Any]]:
    """One row per arm: its ID rows' and each shift's rows from the sweep's own grouping."""
    from transferlab.report.sweep import group

    names = shifts(jobs)
    if not names:
        return []
    by_metric = {name: group(jobs, keys, f"test/shift_{name}_acc", control) for name in names}
    rows = []
    for i, row in enumerate(group(jobs, keys, ID_METRIC, control)):
        rows.append({**row, "shifted": {name: by_metric[name][i] for name in names}})
    return rows


def cell(row: dict[str, Any], with_gain: bool) -> str:
    text = f"{fmt.number(row['mean'], 3)} ± {fmt.number(row['std'], 3)}"
    if with_gain and row.get("control"):
        return f"{text} (control)"
    if with_gain and "gain" in row:
        return f"{text} ({fmt.number(row['gain'], 3, signed=True)}, {row['ahead']}/{row['pairs']})"
    return text


def markdown(rows: list[dict[str, Any]], keys: list[str], control: tuple[str, str] | None) -> str:
    names = list(rows[0]["shifted"])
    with_gain = control is not None and any("gain" in r or r.get("control") for r in rows)
    gain = f" (and the gain over {control[0]}={control[1]}, paired by seed; seeds ahead)" if with_gain else ""
    header = [*keys, "n", f"ID {ID_METRIC}", *(f"OOD {name}" for name in names)]
    cells = [
        [
            *(str(r[k]) for k in keys),
            str(r["n"]),
            cell(r, with_gain),
            *(cell(r["shifted"][n], with_gain) for n in names),
        ]
        for r in rows
    ]
    lines = [
        "## In and out of distribution",
        "",
        f"Test accuracy in distribution (`{ID_METRIC}`) and on each shifted test set "
        f"(`test/shift_<name>_acc`), mean ± std over seeds{gain}.",
        "",
        *fmt.table(header, cells),
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], keys: list[str], out_dir: Path, title: str) -> Path:
    """OOD against ID accuracy, one point per arm and shifted set, with each one's std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name in rows[0]["shifted"]:
        xs = [r["mean"] for r in rows]
        ys = [r["shifted"][name]["mean"] for r in rows]
        ax.errorbar(
            xs, ys, xerr=[r["std"] for r in rows], yerr=[r["shifted"][name]["std"] for r in rows],
            fmt="o", capsize=3, label=name,
        )  # fmt: skip
        for r, x, y in zip(rows, xs, ys, strict=True):
            ax.annotate(
                ", ".join(str(r[k]) for k in keys),
                (x, y),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel(f"ID accuracy ({ID_METRIC})")
    ax.set_ylabel("OOD accuracy (shifted test set)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = out_dir / "summary_ood_vs_id.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
