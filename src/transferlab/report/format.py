"""How every report writes a number, a mean ± std, an interval and a markdown table (one place, so
the sweep summary, the model-selection and transferability sections and the demo agree)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from transferlab.report.stats import mean_std_ci

DASH = "—"  # no value


def number(x: float, digits: int = 4, signed: bool = False) -> str:
    """``x`` to ``digits`` decimals (with its sign when ``signed``); — for NaN."""
    if math.isnan(x):
        return DASH
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def interval(mean: float, half: float, digits: int = 4, signed: bool = False) -> str:
    """``[mean − half, mean + half]``; — where there is no interval (n < 3)."""
    if math.isnan(half):
        return DASH
    return f"[{number(mean - half, digits, signed)}, {number(mean + half, digits, signed)}]"


def mean_std(values: Iterable[float], digits: int = 4) -> str:
    """``mean ± std`` of the finite values (``mean`` alone for one value); — for none."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return DASH
    mean, std, _ = mean_std_ci(finite)
    return number(mean, digits) if math.isnan(std) else f"{number(mean, digits)} ± {number(std, digits)}"


def mean_interval(values: Iterable[float], digits: int = 4, signed: bool = True) -> str:
    """``mean [low, high]`` over the finite values (the 95% t-interval where n ≥ 3); — for none."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return DASH
    mean, _, half = mean_std_ci(finite)
    spread = "" if math.isnan(half) else f" {interval(mean, half, digits, signed)}"
    return f"{number(mean, digits, signed)}{spread}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]
