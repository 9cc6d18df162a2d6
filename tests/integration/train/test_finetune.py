"""Fine-tuning: loading the source backbone, the new head, L2-SP, freezing, the cached source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FAST, build_module
from transferlab.methods.finetune import FinetuneModule
from transferlab.pipeline import prepare_pretraining, pretraining_config
from transferlab.train import train
from transferlab.utils.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A resnet8x4 trained one epoch on four synthetic classes."""
    from conftest import compose_config

    out = tmp_path_factory.mktemp("source")
    train(compose_config([*FAST, "trainer.max_epochs=1"], out))
    return out


def finetune_module(fast_cfg, source: Path | None, *overrides: str) -> tuple[FinetuneModule, object]:
    """The FinetuneModule train() would build, on three synthetic classes."""
    source_ckpt = f"method.source_ckpt={source}" if source else "method.source_ckpt=null"
    return build_module(fast_cfg("method=finetune", "data.num_classes=3", source_ckpt, *overrides))


def source_state(source: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(next((source / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)
    prefix = "net.backbone."
    return {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def test_backbone_and_batchnorm_statistics_equal_the_source_and_the_head_is_new(fast_cfg, source_run):
    module, _ = finetune_module(fast_cfg, source_run)
    expected = source_state(source_run)
    loaded = module.net.backbone.state_dict()
    assert set(loaded) == set(expected)
    assert any("running_mean" in k for k in loaded)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert module.net.head.out_features == 3  # the target's classes, not the source's four


def test_the_head_is_freshly_initialised(fast_cfg, source_run):
    torch.manual_seed(1)
    a, _ = finetune_module(fast_cfg, source_run)
    torch.manual_seed(2)
    b, _ = finetune_module(fast_cfg, source_run)
    assert not torch.equal(a.net.head.weight, b.net.head.weight)
    assert torch.equal(a.net.backbone[0].weight, b.net.backbone[0].weight)


def test_l2sp_is_zero_at_the_start_and_its_gradient_is_lambda_times_the_drift(fast_cfg, source_run):
    lam = 0.3
    module, datamodule = finetune_module(fast_cfg, source_run, f"method.lam={lam}")
    images = next(iter(datamodule.train_dataloader()))[0]
    assert module.penalty(images).item() == 0.0
    with torch.no_grad():
        for param in module.net.backbone.parameters():
            param.add_(0.01 * torch.randn_like(param))
    (lam * module.penalty(images)).backward()
    for name, param in module.net.backbone.named_parameters():
        assert torch.allclose(param.grad, lam * (param.detach() - module.source_weights[name]), atol=1e-7)


def test_source_weights_are_frozen_move_with_the_module_and_are_never_saved(fast_cfg, source_run):
    module, _ = finetune_module(fast_cfg, source_run, "method.lam=0.1")
    expected = source_state(source_run)
    assert set(module.source_weights) == {name for name, _ in module.net.backbone.named_parameters()}
    for name, value in module.source_weights.items():
        assert torch.equal(value, expected[name]) and not value.requires_grad, name
    # the frozen source is rebuilt from the source checkpoint, not stored in the run's
    assert not any(k.startswith("source_net") for k in module.state_dict())
    module.load_state_dict(module.state_dict())  # and loading a checkpoint without it works
    module.to(torch.float64)
    assert all(t.dtype == torch.float64 for t in module.source_weights.values())


def test_weight_decay_is_off_where_the_regularizer_already_acts(fast_cfg, source_run):
    module, _ = finetune_module(fast_cfg, source_run, "method.lam=0.1", "method.backbone_lr_mult=0.1")
    groups = {g["name"]: g for g in module.parameter_groups()}
    assert groups["backbone"]["weight_decay"] == 0.0 and groups["backbone"]["lr_scale"] == 0.1
    assert "weight_decay" not in groups["head"]  # the optimiser's default weight decay applies
    plain, _ = finetune_module(fast_cfg, source_run, "method.lam=0")
    assert "weight_decay" not in {g["name"]: g for g in plain.parameter_groups()}["backbone"]


def test_a_frozen_backbone_is_unchanged_after_training_steps(fast_cfg, source_run, tmp_path):
    cfg = fast_cfg(
        "method=finetune",
        "method/regularizer=none",
        "method.freeze_backbone=true",
        f"method.source_ckpt={source_run}",
        "trainer.max_epochs=2",
    )
    summary = train(cfg)
    assert summary["global_step"] > 0
    trained = torch.load(summary["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    for key, value in source_state(source_run).items():
        assert torch.equal(trained[f"net.backbone.{key}"], value), key  # weights and BN statistics
    assert trained["net.head.weight"].shape == (4, 256)


def test_finetuning_logs_the_loss_terms_and_the_drift(fast_cfg, source_run):
    summary = train(fast_cfg("method=finetune", f"method.source_ckpt={source_run}", "method.lam=0.01"))
    final = summary["final"]
    assert final["train/loss"] == pytest.approx(final["train/ce"] + 0.01 * final["train/reg"], rel=1e-5)
    assert final["train/reg"] > 0
    assert any(k.startswith("drift/") for k in final)
    assert summary["notes"] == []
    assert summary["control"] is False  # λ·R trains: not a sweep's control


def test_a_run_records_that_its_transfer_term_was_off(fast_cfg, source_run, tmp_path):
    """What a sweep's summary finds its control by: λ = 0, or R = 0 whatever λ."""
    for number, overrides in enumerate((["method.lam=0"], ["method/regularizer=none", "method.lam=0.5"])):
        cfg = fast_cfg(
            "method=finetune",
            f"method.source_ckpt={source_run}",
            *overrides,
            output_dir=tmp_path / str(number),
        )
        summary = train(cfg)
        assert summary["control"] is True, overrides


def test_fine_tuning_without_a_source_says_so_in_its_metrics(fast_cfg):
    summary = train(fast_cfg("method=finetune", "method.lam=0"))
    assert summary["notes"] == ["no source: trained from scratch"]
    assert summary["reports"]["from_scratch"] is True  # what the transferability report reads


def test_the_cached_source_is_trained_once_and_reused(fast_cfg):
    trainings = []

    def counting_train(cfg):
        trainings.append(cfg.paths.output_dir)
        return train(cfg)

    cfg0 = fast_cfg("method=finetune", "pretrain=synthetic", "pretrain.data.image_size=16", "seed=0")
    cfg1 = fast_cfg(
        "method=finetune", "pretrain=synthetic", "pretrain.data.image_size=16", "seed=1", "method.lam=0.1"
    )
    first, second = prepare_pretraining(cfg0, counting_train), prepare_pretraining(cfg1, counting_train)
    assert first == second and len(trainings) == 1
    assert (first / "checkpoints" / "manifest.json").is_file()
    # the source recipe has its own seed: the target's seed does not change it
    assert pretraining_config(cfg1).seed == 0


def test_a_pipeline_run_passes_the_source_to_the_target(fast_cfg):
    summary = train(
        fast_cfg("method=finetune", "pretrain=synthetic", "pretrain.data.image_size=16", "method.lam=0.01")
    )
    final = summary["final"]
    assert final["train/reg"] > 0 and "drift/block0" in final  # the source was loaded: the net drifted
    assert final["train/loss"] == pytest.approx(final["train/ce"] + 0.01 * final["train/reg"], rel=1e-5)


@pytest.mark.slow  # CI runs it (.ci/run); the default suite stays under 10 minutes
def test_two_sweep_jobs_started_together_train_the_source_once(tmp_path):
    args = [
        *FAST,
        "method=finetune",
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        f"paths.log_dir={tmp_path}",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "transferlab.train", *args, f"seed={seed}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for seed in (0, 1)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    log = "".join(outputs)
    assert log.count("pretraining stage: training") == 1
    assert log.count("pretraining stage: reusing") == 1
    assert len(list((tmp_path / "cache" / "pretrain").glob("*/metrics.json"))) == 1


def test_missing_source_checkpoint_is_a_clear_error(fast_cfg, tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint not found: method.source_ckpt=.*nope"):
        finetune_module(fast_cfg, tmp_path / "nope")


def test_negative_lambda_is_refused(fast_cfg, source_run):
    with pytest.raises(ConfigError, match=r"method.lam=-0.1 must be >= 0"):
        finetune_module(fast_cfg, source_run, "method.lam=-0.1")


def test_a_checkpoint_of_another_architecture_lists_what_does_not_match(fast_cfg, source_run):
    with pytest.raises(
        CheckpointError,
        match=r"resnet8x4 backbone that does not fit net transferlab.nets.resnet20 \(\d+ mismatches: .*",
    ):
        finetune_module(fast_cfg, source_run, "net=resnet20")


def test_source_and_target_net_configs_must_agree(fast_cfg, tmp_path):
    from conftest import compose_config

    source = tmp_path / "cnn_source"
    train(compose_config([*FAST, "net=cnn", "net.dropout=0.5"], source))
    with pytest.raises(
        CheckpointError, match=r"configs disagree \(dropout: 0.5 \(source\) vs 0.2 \(target\)\)"
    ):
        finetune_module(fast_cfg, source, "net=cnn", "net.dropout=0.2")


def test_a_linear_probe_needs_a_source(fast_cfg):
    with pytest.raises(ConfigError, match="needs source weights"):
        finetune_module(fast_cfg, None, "method.freeze_backbone=true")


def test_a_pipeline_under_ddp_trains_the_source_with_every_rank(tmp_path):
    """trainer=ddp re-launches the command per rank: the workers must join rank 0's source
    training (which holds the cache lock), then the target training."""
    args = [*FAST, "method=finetune", "pretrain=synthetic", "pretrain.data.image_size=16", "trainer=ddp"]
    args += ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false"]
    args += ["data.batch_size=16", "pretrain.data.batch_size=16", f"paths.log_dir={tmp_path}"]
    result = subprocess.run(
        [sys.executable, "-m", "transferlab.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sources = list((tmp_path / "cache" / "pretrain").glob("*/metrics.json"))
    assert len(sources) == 1
    # 116 synthetic images, global batch 16 over 2 ranks: 8 steps per epoch, in both stages
    assert json.loads(sources[0].read_text())["global_step"] == 8
    (target,) = (tmp_path / "train" / "runs").glob("*/metrics.json")
    assert json.loads(target.read_text())["global_step"] == 8
