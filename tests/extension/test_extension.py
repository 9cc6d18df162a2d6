"""A newcomer's extension, a member of each of the seven families written outside the package
(``project/my_transfer.py`` and one YAML each under ``project/conf``), found with
``hydra.searchpath`` and run through the command line: an adaptation method, a fine-tuning
regularizer with a setup hook, a distillation loss that reads feature maps, a test-time
adaptation, a validator, a transferability score and a parameter-efficient fine-tuning member.
The validator, the score and the test-time adaptation join their family's lists (every validator
scored, every score ranked) with nothing named anywhere. If this needed a change
to the package, the family rule would not hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FAST, PAIR

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = Path(__file__).resolve().parent / "project"  # the researcher's own code and configs


def run_outside(entry: str, tmp_path: Path, *overrides: str) -> Path:
    """``python -m transferlab.<entry>`` with the extension's module on the path and its configs on
    Hydra's search path; the run directory."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(EXTENSION), os.environ.get("PYTHONPATH", "")]),
        "PYTHONWARNINGS": "ignore",
    }
    command = [
        sys.executable,
        "-m",
        f"transferlab.{entry}",
        f"hydra.searchpath=[file://{EXTENSION / 'conf'}]",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.log_dir={tmp_path / 'logs'}",
        *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path / "run"


def train_outside(tmp_path: Path, *overrides: str) -> dict:
    """``python -m transferlab.train`` from outside; the run's metrics.json."""
    return json.loads((run_outside("train", tmp_path, *overrides) / "metrics.json").read_text())


def test_the_extension_lives_outside_the_package():
    assert not (ROOT / "src" / "transferlab" / "my_transfer.py").exists()
    configs = sorted(str(p.relative_to(EXTENSION)) for p in EXTENSION.rglob("*.yaml"))
    assert configs == [
        "conf/method/distill_loss/spatial_energy.yaml",
        "conf/method/mean_matching.yaml",
        "conf/method/peft/last_stage.yaml",
        "conf/method/regularizer/feature_anchor.yaml",
        "conf/method/validator/margin.yaml",
        "conf/score/fisher.yaml",
        "conf/tta/confident.yaml",
    ]


def test_a_validator_from_outside_is_scored_and_can_pick_the_checkpoint(tmp_path):
    """Nobody lists it: ``method.validators`` is every member of ``method/validator`` on the search
    path, so the outside one is scored beside the package's, and ``select`` may name it."""
    metrics = train_outside(
        tmp_path, *PAIR, "method=dann", "trainer.max_epochs=1", "logger=none", "select=margin"
    )
    assert 0 <= metrics["final"]["val/validator/margin"] <= 1  # a difference of two probabilities
    assert "val/validator/entropy" in metrics["final"]  # the package's, still there
    record = json.loads((tmp_path / "run" / "selection.jsonl").read_text().splitlines()[-1])
    assert {"margin", "bnm", "oracle"} <= set(record["validators"])
    assert "val/validator/margin" in metrics["best"]  # the checkpoint it picked


def test_a_transferability_score_from_outside_is_ranked_with_the_others(tmp_path):
    run = run_outside(
        "rank",
        tmp_path,
        "data=digits",
        "data.image_size=16",
        "data.classes=[5,6,7,8,9]",
        "candidates=[random:cnn,random:resnet8]",
    )
    rows = json.loads((run / "ranking.json").read_text())
    assert all(row["fisher"] > 0 for row in rows)  # scores=all: the outside one, unnamed
    assert {"logme", "leep", "hscore"} <= set(rows[0])
    assert sorted(row["fisher_rank"] for row in rows) == [1, 2]


def test_a_test_time_adaptation_from_outside_adapts_on_the_stream(tmp_path):
    from conftest import FAST, compose_config
    from transferlab.train import train

    source = tmp_path / "source"
    train(compose_config([*FAST, "net=resnet8"], source))
    run = run_outside("eval", tmp_path, f"ckpt_path={source}", "tta=confident", "tta.batch_size=16")
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["tta"]["adaptation"] == "confident"  # the member's own name
    assert 0.0 <= summary["final"]["test/acc"] <= 1.0


def test_an_adaptation_method_from_outside_trains_through_the_command_line(tmp_path):
    metrics = train_outside(tmp_path, *PAIR, "method=mean_matching", "trainer.max_epochs=1", "logger=none")
    final = metrics["final"]
    assert final["train/alignment"] > 0  # ‖mean_s f − mean_t f‖² of two different domains
    assert final["train/loss"] == pytest.approx(final["train/ce"] + final["train/alignment"], rel=1e-4)
    assert "test/source_acc" in final and "val/target_acc" in final  # the pair's routes


def test_a_regularizer_with_a_setup_hook_from_outside_fine_tunes_from_a_source(tmp_path):
    metrics = train_outside(
        tmp_path,
        *FAST,
        "method=finetune",
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        "method/regularizer=feature_anchor",
        "method.lam=0.5",
    )
    final = metrics["final"]
    # the setup hook measured μ_s before training: the penalty is the drift of the batch mean
    # from it, not from zero (the features of a trained ReLU net are far from zero)
    assert 0 < final["train/reg"] < 10
    assert final["train/loss"] == pytest.approx(final["train/ce"] + 0.5 * final["train/reg"], rel=1e-4)
    state = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert state["method.regularizer._target_"] == "my_transfer.FeatureAnchor"


def test_a_distillation_loss_on_feature_maps_from_outside_joins_kd(tmp_path):
    metrics = train_outside(
        tmp_path,
        *FAST,
        "net=resnet8",
        "method=distill",
        "distill=kd",
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        "+pretrain.net={_target_: transferlab.nets.resnet8x4}",
        "pretrain.pass_to=method.teacher_ckpt",
        "+method/distill_loss@method.losses.energy=spatial_energy",
    )
    final = metrics["final"]
    assert final["train/energy"] > 0 and final["train/kd"] > 0
    expected = 0.1 * final["train/ce"] + 0.9 * final["train/kd"] + final["train/energy"]
    assert final["train/loss"] == pytest.approx(expected, rel=1e-4)


def test_a_feature_map_loss_on_a_layer_the_student_lacks_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(EXTENSION), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "transferlab.train",
            f"hydra.searchpath=[file://{EXTENSION / 'conf'}]",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            *FAST,
            "net=mlp",
            "net.in_channels=3",
            "net.input_size=16",
            "net.hidden=[32]",  # layers 0-3: no '5'
            "method=distill",
            "pretrain=synthetic",
            "pretrain.data.image_size=16",
            "pretrain.pass_to=method.teacher_ckpt",
            "+pretrain.net={_target_: transferlab.nets.resnet8}",
            "+method/distill_loss@method.losses.energy=spatial_energy",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: method.losses.energy.layers (the student): the backbone has no layer '5'")
    assert "Traceback" not in result.stderr


def test_a_parameter_efficient_member_from_outside_trains_its_part_and_its_checkpoint_evaluates(tmp_path):
    metrics = train_outside(
        tmp_path,
        *FAST,
        "method=finetune",
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        "method/peft=last_stage",
    )
    assert 0.1 < metrics["reports"]["trained_fraction"] < 0.9  # the last stage and the head
    kept = torch.load(metrics["best"]["ckpt_path"], weights_only=True)["state_dict"]
    assert any(k.startswith("net.backbone.5.") for k in kept) and not any(
        k.startswith("net.backbone.3.0.conv") for k in kept
    )
    evaluated = run_outside("eval", tmp_path / "eval", f"ckpt_path={metrics['best']['ckpt_path']}")
    final = json.loads((evaluated / "metrics.json").read_text())["final"]
    assert final["test/acc"] == pytest.approx(metrics["final"]["test/acc"], abs=1e-6)
