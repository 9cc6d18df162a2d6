"""Mean ± interval and gains paired by seed: the statistics of every report (sweep summary, model
selection, transferability, the demo)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

# two-sided 95% Student t quantiles by degrees of freedom (1.96 beyond the table)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t95(degrees_of_freedom: int) -> float:
    return _T95.get(degrees_of_freedom, 1.96)


def mean_std_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample std and the half-width of a 95% t-interval; the interval only for n ≥ 3 (with
    two values it spans ±12.7 std: nothing a reader can use)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    std = statistics.stdev(values)
    if len(values) < 3:
        return mean, std, float("nan")
    return mean, std, t95(len(values) - 1) * std / math.sqrt(len(values))


@dataclass(frozen=True)
class PairedGain:
    """An arm's gain over its baseline, paired by seed: the mean of the per-seed differences, the
    half-width of its 95% t-interval (NaN for n < 3), how many seeds are ahead, of how many."""

    mean: float
    ci95: float
    ahead: int
    pairs: int
    gains: tuple[float, ...]


def paired_gain(arm: Mapping[str, float], baseline: Mapping[str, float]) -> PairedGain | None:
    """``arm`` and ``baseline`` map a seed to a value; the seeds both have are paired."""
    gains = [value - baseline[seed] for seed, value in arm.items() if seed in baseline]
    if not gains:
        return None
    mean, _, ci = mean_std_ci(gains)
    return PairedGain(mean, ci, sum(g > 0 for g in gains), len(gains), tuple(gains))
