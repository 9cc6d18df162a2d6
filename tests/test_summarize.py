"""Sweep summaries: one row per combination of swept values, correct means, failed jobs kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from transferlab.summarize import summarize


def fake_job(root: Path, number: int, overrides: list[str], acc: float | None) -> None:
    job = root / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if acc is not None:
        (job / "metrics.json").write_text(json.dumps({"final": {"test/acc": acc, "val/acc": acc - 0.1}}))
    else:
        (job / "failed.json").write_text(json.dumps({"error": "RuntimeError: out of memory"}))


def test_summary_groups_by_swept_values_and_averages_over_seeds(tmp_path: Path):
    accs = {
        ("0", "1"): [0.5, 0.7],
        ("0", "4"): [0.6, 0.8],
        ("0.1", "1"): [0.2, 0.4],
        ("0.1", "4"): [0.9, None],
    }
    number = 0
    for (lam, t), values in accs.items():
        for seed, acc in enumerate(values):
            fake_job(tmp_path, number, [f"method.lam={lam}", f"method.temperature={t}", f"seed={seed}"], acc)
            number += 1
    result = summarize([tmp_path])
    assert result["keys"] == ["method.lam", "method.temperature"]
    rows = {(r["method.lam"], r["method.temperature"]): r for r in result["rows"]}
    assert len(rows) == 4
    assert rows[("0", "1")]["mean"] == pytest.approx(0.6) and rows[("0", "1")]["n"] == 2
    assert rows[("0", "1")]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert rows[("0", "1")]["ci95"] == pytest.approx(12.706 * 0.14142 / 2**0.5, rel=1e-3)
    assert rows[("0.1", "4")]["failed"] == 1 and rows[("0.1", "4")]["n"] == 1  # not silently dropped
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 and sum(",failed,RuntimeError" in line for line in csv_lines) == 1
    assert "| 0.1 | 4 | 1 | 1 |" in (tmp_path / "summary.md").read_text()
    assert len(result["plots"]) == 2 and all(p.stat().st_size > 0 for p in result["plots"])
