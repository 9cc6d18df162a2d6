"""The model-selection report: picks, regrets and rank correlations against numbers worked out by
hand on a made-up sweep of two methods, two epochs each, two seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from transferlab.report.jobs import Job
from transferlab.report.selection import (
    candidates,
    group_picks,
    markdown,
    read_selection,
    recommended,
    spearman,
    validator_table,
    weighted_spearman,
)

# seed -> method -> epoch -> (entropy score, oracle score, target test accuracy)
SWEEP = {
    "0": {
        "dann": {1: (-0.9, 0.70, 0.68), 2: (-0.2, 0.80, 0.79)},
        "source_only": {1: (-0.5, 0.75, 0.74), 2: (-0.4, 0.72, 0.71)},
    },
    "1": {
        "dann": {1: (-0.3, 0.66, 0.65), 2: (-0.8, 0.83, 0.82)},
        "source_only": {1: (-0.6, 0.74, 0.73), 2: (-0.1, 0.70, 0.70)},
    },
}


def write_sweep(root: Path) -> list[dict]:
    jobs = []
    for seed, methods in SWEEP.items():
        for method, epochs in methods.items():
            job = root / f"{method}_{seed}"
            job.mkdir(parents=True)
            lines = [
                json.dumps({"epoch": e, "validators": {"entropy": s, "oracle": o}, "target_test_acc": t})
                for e, (s, o, t) in epochs.items()
            ]
            lines.append(lines[-1])  # a resumed run validates its last epoch again
            (job / "selection.jsonl").write_text("\n".join(lines) + "\n")
            jobs.append(Job(str(job), {"method": method, "seed": seed}, "done"))
    jobs.append(Job(str(root / "failed"), {"method": "dann", "seed": "2"}, "failed"))
    return jobs


def test_a_resumed_epoch_counts_once(tmp_path):
    jobs = write_sweep(tmp_path)
    assert [r["epoch"] for r in read_selection(Path(jobs[0].path))] == [1, 2]
    assert len(candidates(jobs, ["method", "seed"])) == 8  # the failed job gives none


def test_picks_and_regrets_per_seed_are_the_hand_worked_ones(tmp_path):
    rows = {r.validator: r for r in validator_table(candidates(write_sweep(tmp_path), ["method", "seed"]))}
    # seed 0: entropy picks dann@2 (−0.2) -> 0.79; oracle picks dann@2 (0.80) -> 0.79: regret 0
    # seed 1: entropy picks source_only@2 (−0.1) -> 0.70; oracle picks dann@2 (0.83) -> 0.82: regret 0.12
    assert rows["entropy"].picks == {"0": 0.79, "1": 0.70}
    assert rows["entropy"].regrets == pytest.approx({"0": 0.0, "1": 0.12})
    assert rows["oracle"].picks == {"0": 0.79, "1": 0.82} and rows["oracle"].regrets == {"0": 0.0, "1": 0.0}
    # seed 0: entropy's ranks (1, 4, 2, 3) vs accuracy's (1, 4, 3, 2): ρ = 1 − 6·2/(4·15) = 0.8
    assert rows["entropy"].spearman["0"] == pytest.approx(0.8)


def test_per_method_picks_show_how_much_of_a_gain_label_free_selection_keeps(tmp_path):
    table = group_picks(candidates(write_sweep(tmp_path), ["method", "seed"]), "method")
    assert table["dann"]["oracle"] == {"0": 0.79, "1": 0.82}
    assert table["dann"]["entropy"] == {"0": 0.79, "1": 0.65}  # seed 1: entropy takes dann's worse epoch
    assert table["source_only"]["entropy"] == {"0": 0.71, "1": 0.70}
    text = markdown(
        candidates(write_sweep(tmp_path / "again"), ["method", "seed"]), ["method"], ("method", "source_only")
    )
    # entropy: dann 0.79, 0.65 against 0.71, 0.70; the oracle: 0.79, 0.82 against 0.74, 0.73
    assert "| dann − source_only | +0.015 (1/2) | +0.070 (2/2) |" in text
    assert recommended(candidates(write_sweep(tmp_path / "third"), ["method", "seed"])) == "entropy"


def test_spearman_and_weighted_spearman_against_their_definitions():
    x, y = [0.1, 0.4, 0.2, 0.9, 0.5], [0.3, 0.5, 0.1, 0.8, 0.9]
    # ranks x (1, 3, 2, 5, 4), y (2, 3, 1, 4, 5): Σd² = 1+0+1+1+1 = 4, ρ = 1 − 6·4/(5·24) = 0.8
    assert spearman(x, y) == pytest.approx(0.8)
    rx, ry = [1, 3, 2, 5, 4], [2, 3, 1, 4, 5]
    w = [max(a / 5, b / 5) ** 2 for a, b in zip(rx, ry, strict=True)]
    mx = sum(wi * a for wi, a in zip(w, rx, strict=True)) / sum(w)
    my = sum(wi * b for wi, b in zip(w, ry, strict=True)) / sum(w)
    cov = sum(wi * (a - mx) * (b - my) for wi, a, b in zip(w, rx, ry, strict=True))
    vx = sum(wi * (a - mx) ** 2 for wi, a in zip(w, rx, strict=True))
    vy = sum(wi * (b - my) ** 2 for wi, b in zip(w, ry, strict=True))
    assert weighted_spearman(x, y) == pytest.approx(cov / math.sqrt(vx * vy))
    # the top counts more: swapping the two best candidates costs more than swapping the two worst
    top_swapped = weighted_spearman([1, 2, 3, 5, 4], [1, 2, 3, 4, 5])
    bottom_swapped = weighted_spearman([2, 1, 3, 4, 5], [1, 2, 3, 4, 5])
    assert top_swapped < bottom_swapped < 1 and spearman([1, 2, 3, 5, 4], [1, 2, 3, 4, 5]) == pytest.approx(
        spearman([2, 1, 3, 4, 5], [1, 2, 3, 4, 5])
    )
