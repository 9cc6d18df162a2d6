"""The main job (``make demo``) end to end at a reduced size: every row of its table, its files,
the same table from the same command, and the README's copy of it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from transferlab.demo import (
    ARMS,
    README_BEGIN,
    README_END,
    STAGES,
    agreement,
    main,
    published_gains,
    time_left,
    update_readme,
)

TINY = ["--seeds", "1", "--epoch-scale", "0.02"]


def table(out: Path) -> str:
    """results.md without its last line (the wall-clock time)."""
    return (out / "results.md").read_text().strip().rsplit("\n", 1)[0]


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_the_demo_runs_every_method_and_writes_its_table(tmp_path: Path, capsys):
    rows = main([*TINY, "--out", str(tmp_path / "a")])
    printed = capsys.readouterr().out
    assert [(r["family"], r["method"]) for r in rows] == [(a.family, a.name) for a in ARMS]
    assert all(len(r["values"]) == 1 and 0.0 <= r["mean"] <= 1.0 for r in rows)
    results = (tmp_path / "a" / "results.md").read_text()
    for arm in ARMS:
        assert f"| {arm.family} | {arm.name} | " in results and f"] {arm.name} " in printed
    for row in rows:  # every method against its family's baseline, paired by seed
        assert row["baseline"] or f"{100 * row['gain']:+.1f} points ({row['ahead']}/1)" in results
    for stage in STAGES.values():  # the one source model, with its accuracy
        assert f"| {stage} | " in results
    assert "min left" in printed and "wall clock on" in results
    with open(tmp_path / "a" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(ARMS)
    assert (tmp_path / "a" / "results.png").stat().st_size > 5000
    assert any((tmp_path / "a").glob("digits_blended_adaptation/dann/seed0/tensorboard/events.*"))
    assert "TensorBoard: tensorboard --logdir" in printed
    assert "Traceback" not in printed and "GPU available" not in printed  # concise, no noise


@pytest.mark.slow  # two demos; CI runs it (.ci/run)
def test_the_same_demo_command_prints_the_same_table(tmp_path: Path):
    main([*TINY, "--out", str(tmp_path / "a")])
    main([*TINY, "--out", str(tmp_path / "b")])  # a fresh directory: the source is trained again
    assert table(tmp_path / "b") == table(tmp_path / "a")
    assert "| scratch | " in table(tmp_path / "a")


def test_the_time_left_counts_each_pending_job_at_its_arms_pace():
    done = [("scratch", 10.0), ("scratch", 12.0), ("kd", 30.0)]
    # scratch at 11 s, kd at 30 s, an arm not run yet at the mean of all (52 / 3)
    assert time_left(done, ["scratch", "kd", "dann"]) == pytest.approx(11 + 30 + 52 / 3)


def test_the_readme_results_are_rewritten_between_their_markers_only(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{README_BEGIN}\nold table\n{README_END}\n\n## after\n")
    results = tmp_path / "results.md"
    results.write_text("| new | table |\n\ntime line\n")
    update_readme(results, readme)
    once = readme.read_text()
    assert once == f"# intro\n\n{README_BEGIN}\n| new | table |\n\ntime line\n{README_END}\n\n## after\n"
    update_readme(results, readme)
    assert readme.read_text() == once  # idempotent
    (tmp_path / "bare.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no demo-results markers"):
        update_readme(results, tmp_path / "bare.md")


def test_the_repository_readme_holds_the_demo_table():
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    for arm in ARMS:
        assert f"| {arm.name} | " in block


def test_the_last_line_says_whether_the_conclusions_agree_with_the_readmes_table():
    published = published_gains(Path(__file__).resolve().parents[3] / "README.md")
    assert set(published) == {arm.name for arm in ARMS if not arm.baseline}
    rows = [
        {"method": arm.name, "baseline": arm.baseline, "gain": 0.0 if arm.baseline else 0.02} for arm in ARMS
    ]
    assert agreement(rows, {name: 3.0 for name in published}).startswith("Conclusions agree")
    rows[-1]["gain"] = -0.004  # the last method falls behind its baseline here
    line = agreement(rows, {name: 3.0 for name in published})
    assert (
        line.startswith("Conclusions DIFFER") and f"{ARMS[-1].name} -0.4 points here, +3.0 published" in line
    )
    assert "no published table" in agreement(rows, {})
