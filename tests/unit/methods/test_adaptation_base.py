"""The domain-adaptation family on its shared base: every method, loaders routed by name, labelled
target images, and what each method may and may not see."""

from __future__ import annotations

import json

import hydra
import pytest
import torch
from lightning.pytorch import Callback

from conftest import (
    DETERMINISTIC,
    PAIR,
    compose_config,
    deterministic_discriminator,
    final_weights,
    load_script,
    same_weights,
)
from transferlab.data import DomainPairDataModule
from transferlab.methods.adaptation.cdan import CDANModule
from transferlab.train import train
from transferlab.utils.errors import ConfigError, DataError


class ReversedRoutes(DomainPairDataModule):
    """The same pair declaring its evaluation routes (and so its loaders) in the opposite order."""

    def evaluation_routes(self, stage):
        return list(reversed(super().evaluation_routes(stage)))


def test_evaluation_follows_the_declared_routes_and_test_acc_is_the_target_accuracy(fast_cfg, tmp_path):
    from transferlab.eval import evaluate

    common = [*PAIR, "method=coral", *DETERMINISTIC]
    straight = train(fast_cfg(*common, output_dir=tmp_path / "a"))
    reordered = train(
        fast_cfg(*common, "data._target_=test_adaptation_base.ReversedRoutes", output_dir=tmp_path / "b")
    )
    for name in (
        "test/acc",
        "test/loss",
        "test/source_acc",
        "test/source_loss",
        "val/acc",
        "val/target_loss",
    ):
        assert straight["final"][name] == reordered["final"][name], name
    # eval.py follows the same routes with a plain classifier: the same target and source numbers
    ckpt = straight["best"]["ckpt_path"]
    evaluated = evaluate(compose_config([f"ckpt_path={ckpt}"], tmp_path / "eval", "eval"))
    for name in ("test/acc", "test/source_acc"):
        assert evaluated["final"][name] == pytest.approx(straight["final"][name], abs=1e-6), name
    assert (
        straight["final"]["test/loss"] != straight["final"]["test/source_loss"]
    )  # two domains, not one twice


def test_labelled_target_images_are_n_per_class_and_leave_the_unlabelled_set(fast_cfg):
    cfg = fast_cfg(*PAIR, "method=source_only", "data.target_labelled_per_class=3")
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    labelled, unlabelled = datamodule.target_split()
    assert torch.bincount(labelled.labels).tolist() == [3] * datamodule.num_classes
    all_train = set(datamodule.target.datasets["train"].indices.tolist())
    assert set(labelled.indices) | set(unlabelled.indices) == all_train
    assert not set(labelled.indices) & set(unlabelled.indices)
    batch = next(iter(datamodule.train_dataloader()))[0]
    assert set(batch) == {"source", "target", "target_labelled"} and batch["target"].ndim == 4


class ScrambleTargetLabels(Callback):
    """Shift the labels of the target's training images, all of them or all but the labelled ones."""

    def __init__(self, keep_labelled: bool) -> None:
        self.keep_labelled = keep_labelled

    def setup(self, trainer, pl_module, stage) -> None:
        pair = trainer.datamodule
        train_split = pair.target.datasets["train"]
        keep = torch.zeros(len(train_split), dtype=torch.bool)
        if self.keep_labelled:
            labelled, _ = pair.target_split()
            chosen = set(labelled.indices.tolist())
            keep = torch.as_tensor([int(i) in chosen for i in train_split.indices])
        labels = train_split.labels
        labels.copy_(torch.where(keep, labels, (labels + 1) % pair.num_classes))


def test_only_the_chosen_target_labels_reach_training(fast_cfg, tmp_path):
    common = [*PAIR, *DETERMINISTIC, "method=dann", "method.discriminator_dropout=0"]
    common += ["data.target_labelled_per_class=2"]
    clean = train(fast_cfg(*common, output_dir=tmp_path / "a"))
    others = train(fast_cfg(*common, output_dir=tmp_path / "b"), [ScrambleTargetLabels(keep_labelled=True)])
    assert same_weights(final_weights(clean), final_weights(others))  # the unchosen labels change nothing
    every = train(fast_cfg(*common, output_dir=tmp_path / "c"), [ScrambleTargetLabels(keep_labelled=False)])
    assert not same_weights(final_weights(clean), final_weights(every))  # the chosen ones are used
    assert clean["final"]["train/target_ce"] > 0


class BlankTargetImages(Callback):
    """The target's training images all black, on the resident path and the per-image one."""

    def setup(self, trainer, pl_module, stage) -> None:
        train_split = trainer.datamodule.target.datasets["train"]
        train_split.images = torch.zeros_like(train_split.images)


@pytest.mark.parametrize(("method", "uses_target"), [("source_only", False), ("dann", True)])
def test_source_only_never_looks_at_the_target_images(fast_cfg, tmp_path, method, uses_target):
    common = [*PAIR, *DETERMINISTIC, f"method={method}", *deterministic_discriminator(method)]
    clean = train(fast_cfg(*common, output_dir=tmp_path / "a"))
    blank = train(fast_cfg(*common, output_dir=tmp_path / "b"), [BlankTargetImages()])
    assert same_weights(final_weights(clean), final_weights(blank)) != uses_target


def test_an_adaptation_method_on_single_domain_data_is_a_one_line_error(fast_cfg):
    with pytest.raises(ConfigError, match=r"DANNModule trains on a domain pair .* pick pair data"):
        train(fast_cfg("method=dann"))


def test_lambda_on_source_only_is_refused_rather_than_ignored(fast_cfg):
    with pytest.raises(ConfigError, match=r"method=source_only has no alignment term for method.lam"):
        train(fast_cfg(*PAIR, "method=source_only", "+method.lam=1"))


def test_too_many_labelled_target_images_per_class_is_a_clear_error(fast_cfg):
    cfg = fast_cfg(*PAIR, "method=source_only", "data.target_labelled_per_class=100000")
    message = r"target domain: data.target_labelled_per_class=100000 but class '0' has only \d+ training"
    with pytest.raises(DataError, match=message):
        train(cfg)


def test_the_pair_sets_its_batch_and_image_size_on_both_domains_and_says_so(fast_cfg, caplog):
    with caplog.at_level("INFO", logger="transferlab"):
        datamodule = hydra.utils.instantiate(fast_cfg(*PAIR).data)
    for domain in (datamodule.source, datamodule.target):
        assert (domain.batch_size, domain.image_size) == (32, 16)
    lines = [r.getMessage() for r in caplog.records if "domain pair" in r.getMessage()]
    assert len(lines) == 1  # the digits' own batch size (64) and image size (32) are overridden
    assert "data.batch_size=32 and data.image_size=16" in lines[0]
    assert "data.source.batch_size=64" in lines[0] and "data.target.image_size=32" in lines[0]


def test_cdan_randomizes_the_multilinear_map_only_when_it_is_large(fast_cfg):
    from transferlab.nets import cnn, resnet8

    small = CDANModule(resnet8(num_classes=3), discriminator_hidden=8)  # 64 features x 3 classes
    large = CDANModule(cnn(num_classes=10, input_size=8), discriminator_hidden=8)  # 1024 x 10
    assert small.domain_adversarial.multilinear_map.output_dim == 64 * 3
    assert large.domain_adversarial.multilinear_map.output_dim == 1024


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_the_adaptation_benchmark_times_every_method_against_source_only(tmp_path, monkeypatch):
    """scripts/bench_adaptation.py at a tiny size, so it cannot rot (the measurement is its job)."""
    bench = load_script("bench_adaptation", monkeypatch)
    args = ["--experiment", "digits_adaptation", "--epochs", "2", "--limit-batches", "2", "--repeats", "1"]
    report = bench.main([*args, "--out", str(tmp_path)])
    assert set(report["ratio_to_source_only"]) == set(bench.METHODS)
    assert report["ratio_to_source_only"]["source_only"] == 1.0
    assert all(rate > 0 for rate in report["images_per_s"].values())
    written = json.loads((tmp_path / "bench_adaptation_digits_adaptation_cpu.json").read_text())
    assert set(written["validator_seconds"]) == {
        "source_acc",
        "source_loss",
        "entropy",
        "im",
        "bnm",
        "snd",
        "dev",
        "oracle",
    }
    assert all(seconds > 0 for seconds in written["validator_seconds"].values())
