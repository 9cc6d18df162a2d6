"""The main job (``make demo``) end to end at a reduced size: every row of its table, its files."""

from __future__ import annotations

import csv
from pathlib import Path

from transferlab.demo import ARMS, STAGES, main


def test_the_demo_runs_every_method_and_writes_its_table(tmp_path: Path, capsys):
    rows = main(["--seeds", "1", "--max-epochs", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert [(r["family"], r["method"]) for r in rows] == [(a.family, a.name) for a in ARMS]
    assert all(len(r["values"]) == 1 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    table = (tmp_path / "results.md").read_text()
    for arm in ARMS:
        assert f"| {arm.family} | {arm.name} | " in table and f"| {arm.name} | " in printed
    for stage in STAGES.values():  # the source and the teacher, trained once, with their accuracy
        assert f"| {stage} | " in table
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(ARMS)
    assert (tmp_path / "results.png").stat().st_size > 5000
    assert any(tmp_path.glob("digits_adaptation/dann/seed0/tensorboard/events.*"))
    assert "TensorBoard: tensorboard --logdir" in printed
    assert "Traceback" not in printed and "GPU available" not in printed  # concise, no noise
