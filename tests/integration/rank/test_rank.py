"""Picking the source before training: ``python -m transferlab.rank``, the scores a fine-tuning run
records of its starting net, and the scores set against a sweep's outcomes."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest

from conftest import compose_config, run_module
from transferlab.nets.reference import build_net
from transferlab.rank import Candidate, check_fit, rank
from transferlab.report.jobs import Job
from transferlab.report.transferability import markdown, table
from transferlab.train import train
from transferlab.transferability.base import load_scores
from transferlab.transferability.extract import extract, score_all
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.errors import ConfigError

SCORES = load_scores("all", "scores")  # every member of conf/score/

ROOT = Path(__file__).resolve().parents[3]
QUIET = ["logger=none", "~callbacks.progress_bar", "trainer.enable_progress_bar=false"]
SOURCE = ["data=digits", "data.image_size=16", "net=cnn", "trainer.max_epochs=1", *QUIET]
TARGET = ["data=digits", "data.image_size=16", "data.classes=[5,6,7,8,9]"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Two cnn sources on the digits: one trained on 0-4, one on all ten classes."""
    runs = {}
    for name, classes in (("low", "data.classes=[0,1,2,3,4]"), ("all", "data.classes=null")):
        out = tmp_path_factory.mktemp(name)
        train(compose_config([*SOURCE, classes], out))
        runs[name] = out
    return runs


def test_rank_scores_every_candidate_ranks_them_and_writes_the_table(sources, tmp_path):
    candidates = f"candidates=[{sources['low']},{sources['all']},random:cnn]"
    cfg = compose_config([*TARGET, candidates], tmp_path / "rank", config_name="rank")
    rows = rank(cfg)
    assert [r["candidate"] for r in rows] == [str(sources["low"]), str(sources["all"]), "random:cnn"]
    for name in SCORES:  # each score ranks the three candidates 1, 2, 3 by its value
        order = sorted(rows, key=lambda r: -r[name])
        assert [r[f"{name}_rank"] for r in order] == [1, 2, 3]
    # the values are the scores of the candidate's own net on the target's unaugmented images
    datamodule = compose_and_set_up(TARGET, tmp_path)
    net = build_net(open_checkpoint(str(sources["all"]), "candidates"))
    features, probabilities = extract(net, datamodule.clean_train_dataset())
    expected = score_all(features, probabilities, datamodule.clean_train_dataset().labels.numpy(), SCORES)
    for name, value in expected.items():
        assert rows[1][name] == pytest.approx(value, rel=1e-9), name
    out = tmp_path / "rank"
    with open(out / "ranking.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert "| random:cnn |" in (out / "ranking.md").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    assert "ranking/text_summary" in events.Tags()["tensors"]


def compose_and_set_up(overrides: list[str], tmp_path: Path):
    import hydra

    cfg = compose_config(overrides, tmp_path / "data", config_name="rank")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_a_fine_tuning_run_records_the_scores_of_its_source_and_keeps_them_on_resume(sources, tmp_path):
    """The scores in metrics.json are those ``rank`` gives the same source on the same target;
    a resume with more epochs keeps them (the net it would score then is no longer the source)."""
    finetune = [*TARGET, "net=cnn", "method=finetune", f"method.source_ckpt={sources['low']}", *QUIET]
    out = tmp_path / "finetune"
    train(compose_config([*finetune, "trainer.max_epochs=1"], out))
    recorded = json.loads((out / "metrics.json").read_text())["reports"]["transferability"]
    ranked = rank(
        compose_config([*TARGET, f"candidates=[{sources['low']},random:cnn]"], tmp_path / "r", "rank")
    )
    assert recorded == pytest.approx({name: ranked[0][name] for name in SCORES}, rel=1e-9)
    resumed = tmp_path / "resumed"
    last = out / "checkpoints" / "last.ckpt"
    train(compose_config([*finetune, "trainer.max_epochs=2", f"ckpt_path={last}"], resumed))
    summary = json.loads((resumed / "metrics.json").read_text())
    assert summary["global_step"] > json.loads((out / "metrics.json").read_text())["global_step"]
    assert summary["reports"]["transferability"] == recorded


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["candidates=[random:cnn]"], "candidates lists 1 source(s); ranking needs at least two"),
        (["candidates=[random:cnn,random:nosuchnet]"], "no net 'nosuchnet'"),
        (["data.classes=[3]", "candidates=[random:cnn,random:resnet8]"], "the target has 1 class"),
        (["scores=[logme,auc]", "candidates=[random:cnn,random:resnet8]"], "unknown score(s) ['auc']"),
    ],
    ids=["one-candidate", "unknown-net", "one-class", "unknown-score"],
)
def test_bad_input_is_refused_in_one_line(overrides, message, tmp_path):
    result = run_module("rank", *TARGET, *overrides, f"paths.log_dir={tmp_path}")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_a_candidate_that_cannot_read_the_targets_images_is_refused_in_one_line(sources, tmp_path):
    wrong_size = run_module(
        "rank",
        "data=digits",
        "data.image_size=8",
        f"candidates=[{sources['low']},random:cnn]",
        f"paths.log_dir={tmp_path}",
    )
    errors = [line for line in wrong_size.stderr.splitlines() if line.strip()]
    assert wrong_size.returncode != 0 and len(errors) == 1, wrong_size.stderr
    assert "data.image_size=16 (this run: 8)" in errors[0]
    # every target here has three channels (digits are repeated over them): a one-channel net
    # comes from elsewhere, so the check is called directly
    gray = Candidate("gray.ckpt", build_net(open_checkpoint(str(sources["low"]), "c")), True, None, 1)
    with pytest.raises(ConfigError, match="takes 1-channel images and the target's have 3"):
        check_fit(gray, 16, 3)


def job(seed: int, source: str, acc: float, scores: dict[str, float], scratch: bool = False) -> Job:
    reports = {"transferability": scores} | ({"from_scratch": True} if scratch else {})
    overrides = {"seed": str(seed), "method.source_ckpt": source}
    return Job(f"job-{seed}-{source}", overrides, "done", metrics={"test/acc": acc}, reports=reports)


def test_scores_against_outcomes_tau_and_r_against_accuracy_and_gain_and_the_below_scratch_flags():
    accuracies = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.5, "null": 0.6}
    jobs = []
    for seed in (0, 1, 2):
        for source, acc in accuracies.items():
            agrees = acc + 0.01 * seed  # ranks the candidates as they turn out
            disagrees = -acc if source != "null" else -0.6  # the reverse order
            jobs.append(
                job(seed, source, acc + 0.001 * seed, {"leep": agrees, "nce": disagrees}, source == "null")
            )
    result = table(jobs, ["method.source_ckpt", "seed"])
    leep, nce = result["rows"]["leep"], result["rows"]["nce"]
    assert leep["tau"] == pytest.approx([1.0] * 3) and leep["pearson"][0] > 0.99
    assert leep["tau_gain"] == pytest.approx([1.0] * 3)
    assert nce["tau"] == pytest.approx([-1.0] * 3) and nce["pearson_gain"][0] < -0.99
    assert result["scratch"] == ["method.source_ckpt=null"]
    assert result["measured_below_scratch"] == ["method.source_ckpt=d"]
    assert leep["predicted_below_scratch"] == ["method.source_ckpt=d"]  # 0.5 + .01s < 0.6 + .01s
    assert nce["predicted_below_scratch"] == [
        "method.source_ckpt=a",
        "method.source_ckpt=b",
        "method.source_ckpt=c",
    ]
    text = markdown(result)
    assert "| leep | +1.00 [+1.00, +1.00] |" in text
    assert table([dataclasses.replace(jobs[0], reports={})], ["seed"]) is None  # nothing scored: no section
