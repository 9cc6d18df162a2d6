"""LP-FT as a three-stage pipeline (source -> linear probe -> fine-tuning from both) and WiSE-FT as
an evaluation over the mixing coefficient between the fine-tuning run's start and end."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from omegaconf import open_dict

from conftest import compose_config
from transferlab.eval import evaluate
from transferlab.train import train
from transferlab.utils.errors import ConfigError

STAGE = ["pretrain=synthetic", "pretrain.data.image_size=16", "net=resnet8"]


class HeadAtStart(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.head = {k: v.detach().clone() for k, v in pl_module.net.head.state_dict().items()}


def best_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(next((run_dir / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)["state_dict"]


def lpft_config(fast_cfg, tmp_path: Path, *overrides: str):
    """The target stage fine-tunes with the probed head; its first stage is a linear probe on the
    target data, whose own first stage is the synthetic source."""
    cfg = fast_cfg(
        *STAGE, "method=finetune", "method.keep_head=true", *overrides, output_dir=tmp_path / "lpft"
    )
    probe = fast_cfg(
        "net=resnet8", "method=finetune", "method.freeze_backbone=true", "method/regularizer=none",
        "method.transferability=[]",
    )  # fmt: skip
    with open_dict(cfg):
        source = copy.deepcopy(cfg.pretrain)
        cfg.pretrain.task_name = "probe"
        cfg.pretrain.data = copy.deepcopy(cfg.data)
        cfg.pretrain.method = probe.method
        cfg.pretrain.pretrain = source
    return cfg


def test_lp_ft_probes_on_the_source_then_fine_tunes_from_its_backbone_and_head(fast_cfg, tmp_path):
    cfg = lpft_config(fast_cfg, tmp_path)
    start = HeadAtStart()
    summary = train(cfg, [start])
    cache = Path(cfg.paths.cache_dir) / "pretrain"
    probe_dir = next(d for d in cache.glob("probe-*") if d.is_dir())  # not its .lock file
    source_dir = next(
        d for d in cache.glob("synthetic_source-*") if d.is_dir()
    )  # the probe's own first stage
    probe, source = best_state(probe_dir), best_state(source_dir)
    # the probe trained its head on the source's frozen backbone (BatchNorm statistics included)
    assert all(torch.equal(probe[k], source[k]) for k in source if k.startswith("net.backbone."))
    # the fine-tuning stage started from the probed head, not a fresh one
    assert torch.equal(start.head["weight"], probe["net.head.weight"])
    record = torch.load(summary["best"]["ckpt_path"], weights_only=True)["transferlab_start"]
    assert Path(record["source_ckpt"]).parent.parent == probe_dir


def test_wise_ft_interpolates_between_the_start_and_the_end(fast_cfg, tmp_path):
    summary = train(lpft_config(fast_cfg, tmp_path, "trainer.max_epochs=2", "method.optimizer.lr=0.2"))
    ckpt = summary["best"]["ckpt_path"]

    def at(alpha: float | None) -> dict:
        overrides = [f"ckpt_path={ckpt}"] + ([f"wise_alpha={alpha}"] if alpha is not None else [])
        return evaluate(compose_config(overrides, tmp_path / f"eval_{alpha}", "eval"))

    end, one, zero = at(None), at(1.0), at(0.0)
    assert one["final"]["test/acc"] == pytest.approx(end["final"]["test/acc"], abs=1e-6)  # α = 1: θ_1
    record = torch.load(ckpt, weights_only=True)["transferlab_start"]
    probe_metrics = json.loads((Path(record["source_ckpt"]).parents[1] / "metrics.json").read_text())
    assert zero["final"]["test/acc"] == pytest.approx(probe_metrics["final"]["test/acc"], abs=1e-6)  # θ_0
    assert zero["wise_alpha"] == 0.0
    with pytest.raises(ConfigError, match=r"wise_alpha=1\.5 must be in \[0, 1\]"):
        at(1.5)


def test_wise_ft_of_a_run_with_a_fresh_head_is_one_line(fast_cfg, tmp_path):
    summary = train(fast_cfg(*STAGE, "method=finetune", output_dir=tmp_path / "ft"))
    with pytest.raises(
        ConfigError, match=r"has no θ_0 to interpolate with; fine-tune with method\.keep_head=true"
    ):
        evaluate(
            compose_config(
                [f"ckpt_path={summary['best']['ckpt_path']}", "wise_alpha=0.5"], tmp_path / "e", "eval"
            )
        )
