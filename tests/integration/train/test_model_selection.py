"""Model selection in domain adaptation, end to end: splits with one meaning each, the validators
at every validation epoch, what sees the target's labels, selection by a validator, and the
sweep's report of each validator's regret against the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from lightning.pytorch import Callback

from conftest import PAIR
from transferlab.train import train

ROOT = Path(__file__).resolve().parents[3]
VALIDATORS = {"source_acc", "source_loss", "entropy", "im", "bnm", "snd", "dev", "oracle"}


def test_the_target_validation_split_is_carved_from_its_training_images_and_no_val_metric_reads_test(
    fast_cfg,
):
    pair = hydra.utils.instantiate(fast_cfg(*PAIR, "method=dann").data)
    pair.setup("fit")
    val_routes = pair.evaluation_routes("val")
    assert [(r.split, r.domain, r.report) for r in val_routes] == [
        ("val", "source", False),
        ("val", "target", False),
        ("test", "target", True),  # the report route: never logged
    ]
    assert all(r.prefix.startswith("val/") for r in val_routes if not r.report)
    assert all(r.split == "val" for r in val_routes if r.prefix.startswith("val/"))
    target = pair.target.datasets
    _, unlabelled = pair.target_split()
    # the target's validation images come from its training images, and training never sees them
    assert set(target["val"].indices) & set(unlabelled.indices) == set()
    assert len(target["val"]) > 0 and target["val"].images is target["train"].images
    loaders = pair.val_dataloader()
    assert [sum(len(batch[1]) for batch in loader) for loader in loaders] == [
        len(pair.source.datasets["val"]),
        len(target["val"]),
        len(target["test"]),
    ]


class RelabelTargetVal(Callback):
    """Give every target validation image the label 0 (what only the oracle may read)."""

    def setup(self, trainer, pl_module, stage) -> None:
        trainer.datamodule.target.datasets["val"].labels.fill_(0)


def selection_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "selection.jsonl").read_text().splitlines()]


def test_every_validator_is_scored_at_every_validation_and_only_the_oracle_reads_target_labels(
    fast_cfg, tmp_path
):
    common = [*PAIR, "method=dann", "trainer.max_epochs=2", "trainer.deterministic=true"]
    common += ["method.discriminator_dropout=0", "data.target.crop_padding=0"]
    clean = train(fast_cfg(*common, output_dir=tmp_path / "a"))
    train(fast_cfg(*common, output_dir=tmp_path / "b"), [RelabelTargetVal()])
    a, b = selection_records(tmp_path / "a"), selection_records(tmp_path / "b")
    assert [r["epoch"] for r in a] == [0, 1] and all(set(r["validators"]) == VALIDATORS for r in a)
    final = clean["final"]
    assert final["val/validator/oracle"] == pytest.approx(final["val/target_acc"])
    assert final["val/validator/source_acc"] == pytest.approx(final["val/acc"])
    assert not any(k.startswith(("report/", "val/target_test")) for k in final)  # the report is not logged
    for ra, rb in zip(a, b, strict=True):
        assert ra["validators"]["oracle"] != rb["validators"]["oracle"]  # the oracle reads the labels
        for name in VALIDATORS - {"oracle"}:  # nothing else does
            assert ra["validators"][name] == pytest.approx(rb["validators"][name], abs=1e-6), name
        assert ra["target_test_acc"] == rb["target_test_acc"]
    # the last record's target test accuracy is the test of the last epoch's weights (the same
    # two batches of the target's test split)
    last_epoch = ["callbacks.model_checkpoint.monitor=null", "+trainer.limit_test_batches=2"]
    last = train(fast_cfg(*common, *last_epoch, output_dir=tmp_path / "c"))
    assert selection_records(tmp_path / "c")[-1]["target_test_acc"] == pytest.approx(
        last["final"]["test/acc"]
    )


def test_select_names_the_validator_that_picks_the_checkpoint(fast_cfg, caplog):
    cfg = fast_cfg(*PAIR, "method=dann", "trainer.max_epochs=2", "select=entropy")
    assert cfg.callbacks.model_checkpoint.monitor == "val/validator/entropy"
    summary = train(cfg)
    records = selection_records(Path(cfg.paths.output_dir))
    best = max(records, key=lambda r: r["validators"]["entropy"])
    assert summary["best"]["val/validator/entropy"] == pytest.approx(best["validators"]["entropy"])
    assert summary["best"]["ckpt_path"].endswith(f"epoch_{best['epoch']:03d}.ckpt")
    with caplog.at_level("WARNING", logger="transferlab"):
        train(
            fast_cfg(
                *PAIR, "method=source_only", "select=oracle", output_dir=Path(cfg.paths.output_dir) / "o"
            )
        )
    assert [r.getMessage() for r in caplog.records if "target's labels" in r.getMessage()] == [
        "selecting on val/validator/oracle reads the target's labels (its validation split): the pick is an "
        "oracle's, not unsupervised domain adaptation"
    ]


@pytest.mark.slow  # CI runs it (.ci/run): a 2 x 2 sweep through the command line
def test_an_adaptation_sweep_ends_with_each_validators_pick_and_regret(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "transferlab.train",
        "-m",
        *PAIR,
        "logger=none",
        "trainer.max_epochs=2",
        "method=source_only,dann",
        "seed=0,1",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = (tmp_path / "sweep" / "summary.md").read_text()
    assert "## Model selection without target labels" in summary
    assert "8 candidates (configuration × validated epoch) over 2 seed(s)" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "±" in line]
    assert {line.split(" | ")[0][2:] for line in rows} >= VALIDATORS  # one row each
    assert "| dann − source_only |" in summary  # the gain each validator's pick keeps
    assert summary in result.stdout  # the table printed at the end of the sweep
