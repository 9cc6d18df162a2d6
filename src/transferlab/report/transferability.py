"""Transferability scores against the outcomes of a fine-tuning sweep over sources.

Every fine-tuning run scores its starting net on its own training images before training
(``reports.transferability`` in its ``metrics.json``: the source's, or a random net's when it
trains from scratch). In a sweep over sources, the swept values other than the seed name a
candidate; per seed there are then each candidate's scores and its measured target accuracy.

Reported per score, as the Transfer-Learning-Library reports its rankings: the weighted Kendall τ
(``scipy.stats.weightedtau``: hyperbolic weights, the top of the ranking counts most) and the
Pearson r between the scores and the measured accuracies over the candidates; the same against
the gain over training from scratch, paired by seed (the scratch run of the same seed that shares
the most swept values: the same net); mean over seeds with a 95% t-interval where n ≥ 3; and the
candidates a score ranks below scratch on every seed (predicted to transfer worse than no source),
beside those that measured below it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from transferlab.report import format as fmt
from transferlab.report.jobs import Job

MIN_CANDIDATES = 3  # a correlation over fewer is not worth a row


def candidate_name(job: Job, keys: list[str]) -> str:
    """The swept values of a job other than the seed: which source it fine-tuned from (a path by
    its last part)."""

    def short(value: str) -> str:
        return value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value

    return ", ".join(f"{k}={short(job.value(k))}" for k in keys if k != "seed") or fmt.DASH


def _scratch_for(job: Job, scratch_jobs: list[Job]) -> Job | None:
    """The scratch run sharing the most override values with ``job`` (the same net, the same
    target), or None."""

    def shared(other: Job) -> int:
        return sum(other.overrides.get(k) == v for k, v in job.overrides.items() if k != "seed")

    return max(scratch_jobs, key=shared, default=None)


def table(jobs: list[Job], keys: list[str], metric: str = "test/acc") -> dict[str, Any] | None:
    """Per score: its τ and r against ``metric`` and against the gain over scratch (one value per
    seed), and the candidates it ranks below scratch; None when no finished job has scores."""
    from scipy.stats import pearsonr, weightedtau

    scored = [j for j in jobs if j.done and j.reports.get("transferability") and metric in j.metrics]
    if not scored:
        return None
    by_seed: dict[str, list[Job]] = defaultdict(list)
    for job in scored:
        by_seed[job.seed].append(job)
    names = sorted({n for j in scored for n in j.reports["transferability"]})
    is_scratch = {id(j): bool(j.reports.get("from_scratch")) for j in scored}
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        row: dict[str, Any] = {"tau": [], "pearson": [], "tau_gain": [], "pearson_gain": []}
        predicted_below: dict[str, list[bool]] = defaultdict(list)
        for seed_jobs in by_seed.values():
            present = [j for j in seed_jobs if name in j.reports["transferability"]]
            scores = [j.reports["transferability"][name] for j in present]
            accuracy = [float(j.metrics[metric]) for j in present]
            if len(present) >= MIN_CANDIDATES:
                row["tau"].append(float(weightedtau(scores, accuracy).statistic))
                row["pearson"].append(float(pearsonr(scores, accuracy).statistic))
            scratch_jobs = [j for j in present if is_scratch[id(j)]]
            sources = [j for j in present if not is_scratch[id(j)]]
            if not scratch_jobs:
                continue
            gains, source_scores = [], []
            for job in sources:
                base = _scratch_for(job, scratch_jobs)
                gains.append(float(job.metrics[metric]) - float(base.metrics[metric]))
                source_scores.append(job.reports["transferability"][name])
                below = job.reports["transferability"][name] < base.reports["transferability"][name]
                predicted_below[candidate_name(job, keys)].append(below)
            if len(sources) >= MIN_CANDIDATES:
                row["tau_gain"].append(float(weightedtau(source_scores, gains).statistic))
                row["pearson_gain"].append(float(pearsonr(source_scores, gains).statistic))
        row["predicted_below_scratch"] = sorted(c for c, flags in predicted_below.items() if all(flags))
        rows[name] = row
    return {
        "rows": rows,
        "metric": metric,
        "candidates": sorted({candidate_name(j, keys) for j in scored}),
        "scratch": sorted({candidate_name(j, keys) for j in scored if is_scratch[id(j)]}),
        "measured_below_scratch": measured_below_scratch(scored, keys, metric, is_scratch),
    }


def measured_below_scratch(
    jobs: list[Job], keys: list[str], metric: str, is_scratch: dict[int, bool]
) -> list[str]:
    """The candidates whose mean gain over scratch (paired by seed) is negative."""
    by_seed: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        by_seed[job.seed].append(job)
    gains: dict[str, list[float]] = defaultdict(list)
    for seed_jobs in by_seed.values():
        scratch_jobs = [j for j in seed_jobs if is_scratch[id(j)]]
        for job in seed_jobs:
            if scratch_jobs and not is_scratch[id(job)]:
                base = _scratch_for(job, scratch_jobs)
                gains[candidate_name(job, keys)].append(
                    float(job.metrics[metric]) - float(base.metrics[metric])
                )
    return sorted(c for c, g in gains.items() if sum(g) / len(g) < 0)


def markdown(result: dict[str, Any] | None) -> str:
    """The scores-against-outcomes section of a sweep's summary."""
    if not result:
        return ""
    metric = result["metric"]
    lines = [
        "## Transferability scores against the outcomes",
        "",
        f"{len(result['candidates'])} candidates; trained from scratch: "
        f"{'; '.join(result['scratch']) or 'none in this sweep (no gains)'}.",
        f"Weighted Kendall τ and Pearson r between each score (of the starting net, before training) "
        f"and {metric} over the candidates, and against the gain over scratch paired by seed; "
        "mean over seeds [95% t-interval where n ≥ 3]. "
        f"Measured below scratch: {'; '.join(result['measured_below_scratch']) or 'none'}.",
        "",
    ]
    lines += fmt.table(
        [
            "score",
            "τ vs accuracy",
            "r vs accuracy",
            "τ vs gain",
            "r vs gain",
            "below scratch by it, every seed",
        ],
        (
            [
                name,
                *(fmt.mean_interval(row[k], 2) for k in ("tau", "pearson", "tau_gain", "pearson_gain")),
                "; ".join(row["predicted_below_scratch"]) or "none",
            ]
            for name, row in result["rows"].items()
        ),
    )
    return "\n".join(lines) + "\n"
