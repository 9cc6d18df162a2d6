"""Model selection in a sweep: what each validator would pick, and its regret against the oracle.

Every adaptation run writes ``selection.jsonl`` beside its metrics: one line per validated epoch
with every validator's score (``val/validator/<name>``) and, for this report only, the target's
test accuracy at that epoch. A *candidate* is one (configuration, epoch) of the sweep; per seed,
a validator picks the candidate it scores highest, and the oracle (target validation accuracy)
picks its own. Reported per validator, paired by seed: the target test accuracy of its pick, the
regret (the oracle pick's test accuracy minus the validator pick's), and how well its scores rank
the candidates (Spearman, and the weighted Spearman of Musgrave et al. 2022, which weighs the
candidates that either ranking puts near the top more). The target's test accuracy never feeds a
selection: it is read here, after every run has finished.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.report import format as fmt
from transferlab.report.jobs import Job
from transferlab.report.stats import paired_gain
from transferlab.utils.selection import ORACLE, SELECTION_FILE, TEST_KEY

DIGITS = 3  # accuracies of picks: three decimals


@dataclass(frozen=True)
class Candidate:
    """One validated epoch of one job: its validator scores and its target test accuracy."""

    job: str
    seed: str
    group: dict[str, str]  # the swept values that set the job apart (seed excluded)
    epoch: int
    scores: dict[str, float]
    test_acc: float


def read_selection(job_dir: Path) -> list[dict[str, Any]]:
    """A job's per-epoch records, one per epoch (a resumed run's re-validated epoch: the last)."""
    path = Path(job_dir) / SELECTION_FILE
    if not path.is_file():
        return []
    by_epoch = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            by_epoch[int(record["epoch"])] = record
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill: the rest is read
            print(f"unreadable: {path} line {number}", file=sys.stderr)
    return [by_epoch[e] for e in sorted(by_epoch)]


def candidates(jobs: Iterable[Job], keys: list[str]) -> list[Candidate]:
    """Every validated epoch of every finished job that recorded one (``keys``: the swept keys)."""
    found = []
    for job in jobs:
        if not job.done:
            continue
        for record in read_selection(Path(job.path)):
            if TEST_KEY not in record or not record.get("validators"):
                continue
            found.append(
                Candidate(
                    job=job.path,
                    seed=job.seed,
                    group={k: job.value(k) for k in keys if k != "seed"},
                    epoch=int(record["epoch"]),
                    scores={k: float(v) for k, v in record["validators"].items()},
                    test_acc=float(record[TEST_KEY]),
                )
            )
    return found


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the (average) ranks."""
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def weighted_spearman(scores: list[float], accuracies: list[float], power: float = 2.0) -> float:
    """Musgrave et al.'s weighted Spearman: the weighted Pearson correlation of the dense ranks,
    each candidate weighted by max(rank_score, rank_accuracy)^power, the ranks divided by their
    maximum (so the candidates either ranking puts on top count most; their power is 2). Their
    code (``powerful-benchmarker``, ``weighted_spearman``) correlates with the WeightedCorr
    package's weighted ranks; here the plain dense ranks are correlated with the same weights."""
    from scipy.stats import rankdata

    if len(scores) < 3 or len(set(scores)) < 2 or len(set(accuracies)) < 2:
        return math.nan
    v = rankdata(scores, method="dense") / len(set(scores))
    t = rankdata(accuracies, method="dense") / len(set(accuracies))
    w = np.maximum(v, t) ** power
    vm, tm = np.average(v, weights=w), np.average(t, weights=w)
    cov = np.average((v - vm) * (t - tm), weights=w)
    return float(cov / math.sqrt(np.average((v - vm) ** 2, weights=w) * np.average((t - tm) ** 2, weights=w)))


@dataclass
class ValidatorRow:
    validator: str
    picks: dict[str, float] = field(default_factory=dict)  # seed -> test accuracy of its pick
    regrets: dict[str, float] = field(default_factory=dict)  # seed -> oracle pick − its pick
    spearman: dict[str, float] = field(default_factory=dict)
    weighted_spearman: dict[str, float] = field(default_factory=dict)


def pick(pool: list[Candidate], validator: str) -> Candidate:
    """The candidate ``validator`` scores highest (the earliest epoch of the first job on ties)."""
    return max(pool, key=lambda c: c.scores.get(validator, -math.inf))


def validator_table(found: list[Candidate]) -> list[ValidatorRow]:
    """Per validator: per seed, the test accuracy of its pick, its regret against the oracle's
    pick, and its (weighted) Spearman with the test accuracy over that seed's candidates."""
    names = sorted({name for c in found for name in c.scores}, key=lambda n: (n == ORACLE, n))
    seeds = sorted({c.seed for c in found})
    rows = []
    for name in names:
        row = ValidatorRow(name)
        for seed in seeds:
            pool = [c for c in found if c.seed == seed and name in c.scores]
            if not pool:
                continue
            chosen = pick(pool, name)
            row.picks[seed] = chosen.test_acc
            if any(ORACLE in c.scores for c in pool):
                row.regrets[seed] = pick(pool, ORACLE).test_acc - chosen.test_acc
            scores, accs = [c.scores[name] for c in pool], [c.test_acc for c in pool]
            row.spearman[seed] = spearman(scores, accs)
            row.weighted_spearman[seed] = weighted_spearman(scores, accs)
        rows.append(row)
    return rows


def group_picks(found: list[Candidate], key: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per value of the swept ``key`` (a method), per validator, per seed: the test accuracy of
    the validator's pick among that value's candidates (its other swept values × epochs)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    names = sorted({name for c in found for name in c.scores})
    for value in sorted({c.group.get(key, "—") for c in found}):
        members = [c for c in found if c.group.get(key, "—") == value]
        table[value] = {}
        for name in names:
            table[value][name] = {
                seed: pick([c for c in members if c.seed == seed], name).test_acc
                for seed in sorted({c.seed for c in members})
                if any(name in c.scores for c in members if c.seed == seed)
            }
    return table


def markdown(found: list[Candidate], keys: list[str], control: tuple[str, str] | None = None) -> str:
    """The model-selection section of a sweep summary (empty when no job recorded candidates)."""
    if not found:
        return ""
    seeds = sorted({c.seed for c in found})
    lines = [
        "## Model selection without target labels",
        "",
        f"{len(found)} candidates (configuration × validated epoch) over {len(seeds)} seed(s); per seed each "
        "validator picks its best-scored candidate. Target test accuracy of the pick (mean ± std over "
        "seeds), regret = oracle's pick − validator's pick (mean, 95% t-interval paired by seed where "
        "n ≥ 3), and the rank correlation of the validator's score with the target test accuracy over "
        "the candidates (mean over seeds). The oracle reads the target's validation labels.",
        "",
    ]
    lines += fmt.table(
        ["validator", "test acc of its pick", "regret vs oracle", "Spearman", "weighted Spearman"],
        (
            [
                row.validator,
                fmt.mean_std(row.picks.values(), DIGITS),
                fmt.DASH if row.validator == ORACLE else fmt.mean_interval(row.regrets.values(), DIGITS),
                fmt.mean_std(row.spearman.values(), DIGITS),
                fmt.mean_std(row.weighted_spearman.values(), DIGITS),
            ]
            for row in validator_table(found)
        ),
    )
    method_key = next((k for k in keys if k == "method"), None)
    if method_key:
        lines += ["", *per_method(found, method_key, control)]
    return "\n".join(lines) + "\n"


def per_method(found: list[Candidate], method_key: str, control: tuple[str, str] | None) -> list[str]:
    """Per method: the test accuracy of each validator's pick among that method's candidates and,
    with the sweep's control among the methods, each one's gain over it, paired by seed."""
    table = group_picks(found, method_key)
    names = sorted({n for v in table.values() for n in v}, key=lambda n: (n == ORACLE, n))
    rows = [
        [value, *(fmt.mean_std(per_validator.get(n, {}).values(), DIGITS) for n in names)]
        for value, per_validator in table.items()
    ]
    if control and control[0] == method_key and control[1] in table:
        base = table[control[1]]
        for value, per_validator in table.items():
            if value == control[1]:
                continue
            cells = []
            for name in names:
                gain = paired_gain(per_validator.get(name, {}), base.get(name, {}))
                cells.append(
                    fmt.DASH
                    if gain is None
                    else f"{fmt.number(gain.mean, DIGITS, signed=True)} ({gain.ahead}/{gain.pairs})"
                )
            rows.append([f"{value} − {control[1]}", *cells])
    return [
        f"Per {method_key}: target test accuracy of each validator's pick among that {method_key}'s "
        "candidates (its other swept values × epochs), mean over seeds; below it, the gain over the "
        "control's pick by the same validator, paired by seed.",
        "",
        *fmt.table([method_key, *names], rows),
    ]


def recommended(found: list[Candidate]) -> str | None:
    """The label-free validator with the smallest mean regret (ties: the higher Spearman)."""
    rows = [r for r in validator_table(found) if r.validator != ORACLE and r.regrets]
    if not rows:
        return None
    return min(
        rows,
        key=lambda r: (
            statistics.fmean(r.regrets.values()),
            -statistics.fmean([s for s in r.spearman.values() if not math.isnan(s)] or [0.0]),
        ),
    ).validator
