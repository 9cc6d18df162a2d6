"""The published benchmarks' protocol (conf/protocol/tllib_benchmarks.yaml) against the reference
library's dann.py: the bottleneck, the learning rates per part, the annealing and the reversal's
warm-start, on an Office-31 tree written in its layout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import ADAPTATION, at_step, build_module, compose_config, members_of, write_benchmark
from transferlab.train import train
from transferlab.utils.config import apply_protocol

ADAPTATION_METHODS = members_of(ADAPTATION)
VALIDATORS = sorted(
    p.stem for p in (Path(__file__).parents[3] / "conf" / "method" / "validator").glob("*.yaml")
)


def tllib_lr(base: float, iteration: int) -> float:
    """dann.py's ``LambdaLR``: lr·(1 + 0.001·i)^(−0.75) (lr_gamma 0.001, lr_decay 0.75)."""
    return base * (1.0 + 0.001 * iteration) ** -0.75


def tllib_reversal(iteration: int) -> float:
    """``WarmStartGradientReverseLayer(alpha=1, lo=0, hi=1, max_iters=1000)`` at iteration i."""
    return 2.0 / (1.0 + math.exp(-iteration / 1000)) - 1.0


@pytest.fixture
def office31_module(tmp_path: Path):
    root = write_benchmark(
        tmp_path / "office31", "office31", per_class=2, domains=["amazon", "webcam"], size=8
    )
    cfg = compose_config(
        [
            "experiment=office31_adaptation",
            f"data.source.root={root}",
            f"data.target.root={root}",
            "data.source.download=false",
            "data.target.download=false",
            "net.arch=resnet18",  # the protocol's parts on a smaller ResNet, no ImageNet download
            "net.weights=null",
            "data.image_size=32",
            "logger=none",
        ],
        tmp_path / "run",
    )
    apply_protocol(cfg)
    return build_module(cfg)


def test_the_office31_protocol_is_the_reference_library_s(office31_module):
    module, data = office31_module
    net = module.net
    assert net.feature_dim == 256 and isinstance(net.bottleneck[1], torch.nn.BatchNorm1d)
    assert module.net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 256)
    assert data.iterations_per_epoch == 1000 and data.batch_size == 32

    at_step(module, 0, 0, 20000, 1000)  # a run of 20 epochs of 1,000 iterations
    optimizer = module.configure_optimizers()
    optimizer, scheduler = (optimizer["optimizer"], optimizer["lr_scheduler"]["scheduler"])
    rates = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert rates["backbone"] == pytest.approx(0.001)  # 0.1 × lr for the pretrained backbone
    assert rates["net"] == rates["discriminator"] == pytest.approx(0.01)  # bottleneck, head, discriminator
    bottleneck = {id(p) for p in net.bottleneck.parameters()}
    net_params = {
        id(p) for group in optimizer.param_groups if group["name"].startswith("net") for p in group["params"]
    }
    assert bottleneck <= net_params
    assert all(g["nesterov"] and g["momentum"] == 0.9 for g in optimizer.param_groups)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(1e-3)

    # 20 epochs of 1,000 iterations: the annealing and the warm-start at the library's iterations
    for step in (0, 1000, 7345, 19999):
        scheduler.last_epoch = step
        want = tllib_lr(0.01, step)
        lr = scheduler.get_lr()[[g["name"] for g in optimizer.param_groups].index("net")]
        assert lr == pytest.approx(want, rel=1e-6)
        at_step(module, step // 1000, step, 20000, 1000)
        assert module.reversal_coefficient() == pytest.approx(tllib_reversal(step), abs=1e-6)


@pytest.mark.parametrize("method", ADAPTATION_METHODS)
def test_every_adaptation_method_and_validator_runs_on_an_office31_pair(method, tmp_path: Path):
    root = write_benchmark(tmp_path / "office31", "office31", per_class=2, domains=["dslr", "webcam"], size=8)
    cfg = compose_config(
        [
            "experiment=office31_adaptation",
            f"method={method}",
            "data.source.domain=D",
            "data.target.domain=W",
            *(f"data.{d}.{k}" for d in ("source", "target") for k in (f"root={root}", "download=false")),
            "net.arch=resnet18",
            "net.weights=null",
            "data.image_size=32",
            "data.batch_size=8",
            "data.iterations_per_epoch=2",
            "trainer.max_epochs=1",
            "logger=none",
            "~callbacks.progress_bar",
            "trainer.enable_progress_bar=false",
            "feature_space.enabled=false",
        ],
        tmp_path / "run",
    )
    summary = train(cfg)
    assert summary["global_step"] == 2
    assert 0.0 <= summary["final"]["test/acc"] <= 1.0
    validators = {k for k in summary["final"] if k.startswith("val/validator/")}
    assert {f"val/validator/{name}" for name in VALIDATORS} == validators
    assert all(math.isfinite(summary["final"][k]) for k in validators)
