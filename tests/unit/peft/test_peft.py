"""Parameter-efficient fine-tuning: which parameters each member trains, that each starts from the
source net exactly, LoRA's and the adapters' updates against their formulas, and checkpoints that
keep only the trained part yet evaluate as the run did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import FAST, PAIR, build_module, compose_config
from transferlab.eval import evaluate
from transferlab.nets.resnet import resnet8
from transferlab.peft.adapter import BottleneckAdapter
from transferlab.peft.base import trained_fraction
from transferlab.peft.bitfit import BitFit
from transferlab.peft.lora import LoRA
from transferlab.train import train
from transferlab.utils.errors import CheckpointError, ConfigError


def trained_names(net: nn.Module) -> set[str]:
    return {name for name, p in net.named_parameters() if p.requires_grad}


def test_bitfit_trains_the_backbone_s_biases_and_the_head():
    net = resnet8(num_classes=5)
    BitFit().apply(net)
    backbone = {n for n in trained_names(net) if n.startswith("backbone.")}
    assert backbone and all(n.endswith(".bias") for n in backbone)
    assert {"head.weight", "head.bias"} <= trained_names(net)
    assert not any(n.endswith("conv1.weight") for n in trained_names(net))
    trained, total = trained_fraction(net)
    assert 0 < trained / total < 0.1


def test_lora_s_update_is_alpha_over_r_times_b_a_and_starts_at_zero():
    """Hu et al.'s h = W·x + (α/r)·B·A·x on a linear layer, written out."""
    torch.manual_seed(0)
    net = nn.Module()
    net.backbone = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    net.head = nn.Linear(4, 3)
    x = torch.randn(7, 6)
    before = net.backbone(x)
    LoRA(rank=2, alpha=3.0, target_modules=["0"]).apply(net)
    assert torch.allclose(net.backbone(x), before)  # B = 0: the source net exactly
    layer = net.backbone[0]
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, in), (out, r)
    with torch.no_grad():
        b.normal_()
    base = layer.base_layer
    want = base(x) + (3.0 / 2) * x @ a.T @ b.T
    assert torch.allclose(layer(x), want, atol=1e-6)
    assert trained_names(net.backbone) == {"0.lora_A.default.weight", "0.lora_B.default.weight"}
    (grad,) = torch.autograd.grad(layer(x).sum(), b)  # d/dB Σ (α/r)·x·Aᵀ·Bᵀ = (α/r)·1·Σ_n (x·Aᵀ)_n
    assert torch.allclose(grad, (3.0 / 2) * torch.ones(5, 1) @ (x @ a.T).sum(0, keepdim=True), atol=1e-5)


def test_lora_on_a_resnet_s_convolutions_trains_its_factors_alone():
    torch.manual_seed(0)
    net = resnet8(num_classes=5)
    x = torch.randn(2, 3, 16, 16)
    net.eval()
    before = net(x)
    LoRA(rank=4, target_modules=["conv1", "conv2"]).apply(net)
    assert torch.allclose(net(x), before, atol=1e-6)
    backbone = {n for n in trained_names(net) if n.startswith("backbone.")}
    assert backbone and all("lora_" in n for n in backbone)
    trained, total = trained_fraction(net)
    assert trained < total / 4


def test_a_lora_target_the_net_lacks_is_one_line_listing_its_layers():
    with pytest.raises(
        ConfigError,
        match=r"method\.peft\.target_modules: .* no linear or convolution layer 'qkv'; its layers are",
    ):
        LoRA(target_modules=["qkv"]).apply(resnet8(num_classes=3))


def test_an_adapter_adds_up_relu_down_of_the_layer_s_output_and_starts_as_the_identity():
    torch.manual_seed(0)
    net = resnet8(num_classes=5)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    stage = "5"  # the last stage of a CIFAR ResNet: (N, 64, 4, 4) maps
    layer = net.backbone.get_submodule(stage)
    seen: dict[str, torch.Tensor] = {}
    first = layer.register_forward_hook(lambda m, i, o: seen.update(h=o.detach().clone()))
    before = net(x)
    first.remove()
    BottleneckAdapter(layers=[stage], reduction=2).apply(net)
    assert torch.allclose(net(x), before)  # W_up = 0: the source net exactly
    adapter = net.peft_adapters[stage]
    with torch.no_grad():
        adapter.up.weight.normal_()
    after = layer.register_forward_hook(lambda m, i, o: seen.update(out=o))  # runs after the adapter's
    net(x)
    after.remove()
    assert torch.allclose(seen["out"], seen["h"] + adapter(seen["h"]), atol=1e-6)
    backbone = {n for n in trained_names(net) if n.startswith("backbone.")}
    assert not backbone and any(n.startswith("peft_adapters.") for n in trained_names(net))


def test_an_adapter_s_residual_on_maps_is_a_1x1_bottleneck_written_out():
    from transferlab.peft.adapter import Bottleneck

    torch.manual_seed(1)
    block = Bottleneck(width=6, reduction=3)
    with torch.no_grad():
        block.up.weight.normal_()
        block.up.bias.normal_()
    h = torch.randn(2, 6, 4, 4)
    down = torch.einsum("nchw,kc->nkhw", h, block.down.weight) + block.down.bias.view(1, -1, 1, 1)
    up = torch.einsum("nkhw,ck->nchw", torch.relu(down), block.up.weight) + block.up.bias.view(1, -1, 1, 1)
    assert torch.allclose(block(h), up, atol=1e-6)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source")
    train(compose_config([*FAST, "net=resnet8", "trainer.max_epochs=1"], out))
    return out


LORA = ["method=finetune", "net=resnet8", "method/peft=lora", "method.peft.rank=2"]


def test_a_lora_run_keeps_only_its_part_and_its_checkpoint_evaluates_as_the_run_did(
    fast_cfg, source, tmp_path
):
    summary = train(fast_cfg(*LORA, f"method.source_ckpt={source}", output_dir=tmp_path / "lora"))
    ckpt = Path(summary["best"]["ckpt_path"])
    state = torch.load(ckpt, weights_only=True)
    kept = [k for k in state["state_dict"] if k.startswith("net.")]
    assert any("lora_" in k for k in kept) and "net.head.weight" in kept
    assert not any(k.endswith("conv1.base_layer.weight") or k.endswith("conv1.weight") for k in kept)
    full = torch.load(next((source / "checkpoints").glob("epoch_*.ckpt")), weights_only=True)
    assert ckpt.stat().st_size < 0.6 * sum(v.numel() * v.element_size() for v in full["state_dict"].values())
    metrics = __import__("json").loads((tmp_path / "lora" / "metrics.json").read_text())
    assert 0 < metrics["reports"]["trained_fraction"] < 0.5
    evaluated = evaluate(compose_config([f"ckpt_path={ckpt}"], tmp_path / "eval", "eval"))
    assert evaluated["final"]["test/acc"] == pytest.approx(summary["final"]["test/acc"], abs=1e-6)
    # the source it stands on changed: refused in one line, never evaluated on another base
    source_file = Path(state["transferlab_peft"]["source_ckpt"])
    source_file.write_bytes(source_file.read_bytes() + b"\0")
    (source_file.parent / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=r"changed since \(sha256\): the part no longer fits it"):
        evaluate(compose_config([f"ckpt_path={ckpt}"], tmp_path / "eval2", "eval"))


def test_peft_beside_a_penalty_toward_the_source_or_a_linear_probe_is_refused(fast_cfg, source):
    with pytest.raises(
        ConfigError, match=r"method/peft \(LoRA\) trains new parameters .*\(method\.lam=0\.01\)"
    ):
        build_module(
            fast_cfg(*LORA, f"method.source_ckpt={source}", "method/regularizer=l2sp", "method.lam=0.01")
        )
    with pytest.raises(ConfigError, match=r"method\.freeze_backbone=true is a linear probe"):
        build_module(fast_cfg(*LORA, f"method.source_ckpt={source}", "method.freeze_backbone=true"))


def test_bitfit_with_l2sp_pulls_the_biases_toward_the_source(fast_cfg, source):
    summary = train(
        fast_cfg(
            "method=finetune", "net=resnet8", "method/peft=bitfit", f"method.source_ckpt={source}",
            "method/regularizer=l2sp", "method.lam=0.01",
        )
    )  # fmt: skip
    assert summary["final"]["train/reg"] > 0


def test_peft_on_a_method_that_is_not_fine_tuning_is_one_line(tmp_path):
    from conftest import run_module

    result = run_module(
        "train", *FAST[:3], *PAIR[:1], "method=dann", "+method/peft=lora", f"hydra.run.dir={tmp_path}"
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "method.peft" in last and "Traceback" not in result.stderr, last


def test_a_lora_run_resumed_from_its_partial_checkpoint_ends_like_an_uninterrupted_one(
    fast_cfg, source, tmp_path
):
    common = [*LORA, f"method.source_ckpt={source}", "trainer.deterministic=true"]
    whole = train(fast_cfg(*common, "trainer.max_epochs=2", output_dir=tmp_path / "whole"))
    first = fast_cfg(*common, "trainer.max_epochs=1", output_dir=tmp_path / "first")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = train(
        fast_cfg(*common, "trainer.max_epochs=2", f"ckpt_path={last}", output_dir=tmp_path / "second")
    )
    a = torch.load(whole["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    b = torch.load(resumed["best"]["last_ckpt_path"], weights_only=True)["state_dict"]
    factors = [k for k in a if "lora_" in k]
    assert factors and a.keys() == b.keys()  # the resumed run's checkpoints stay partial too
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in factors)
    assert not all(torch.equal(a[k], torch.load(last, weights_only=True)["state_dict"][k]) for k in factors)


@pytest.mark.slow  # five trainings; CI runs it (.ci/run)
def test_the_peft_benchmark_counts_what_each_arm_trains_and_stores(tmp_path, monkeypatch):
    """scripts/bench_peft.py at a tiny size, so it cannot rot (the measurement is its job)."""
    from conftest import load_script

    bench = load_script("bench_peft", monkeypatch)
    tiny = [
        "pretrain=synthetic",
        "pretrain.data.image_size=16",
        "data=synthetic",
        "data.image_size=16",
        "net=resnet8x4",
    ]
    args = ["--experiment", "none", "--epochs", "2", "--limit-batches", "1", "--repeats", "1"]
    report = bench.main([*args, "--out", str(tmp_path), *tiny])
    cost = report["cost"]
    assert set(cost) == set(bench.ARMS) and report["ratio_to_full"]["full"] == 1.0
    assert cost["full"]["trained_fraction"] == 1.0  # every parameter
    assert 0 < cost["linear_probe"]["trained_fraction"] < 0.05  # the head alone
    for arm in ("bitfit", "lora", "adapter"):
        assert 0 < cost[arm]["trained_fraction"] < 0.5
        assert cost[arm]["net_tensors_in_checkpoint"] < cost["full"]["net_tensors_in_checkpoint"] / 2
    # a linear probe stores the whole net (its optimiser state only for the head: a smaller file)
    assert cost["linear_probe"]["net_tensors_in_checkpoint"] == cost["full"]["net_tensors_in_checkpoint"]
    assert cost["linear_probe"]["checkpoint_mb"] < cost["full"]["checkpoint_mb"]
