"""The pieces of the fast recipes (cifar10_fast, cifar10_airbench): zero-initialised residual
blocks, BatchNorm momentum, the airbench net and its whitening filters, the lookahead, flip-averaged
evaluation and the BatchNorm learning-rate scale."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from transferlab.callbacks import Lookahead
from transferlab.methods.supervised import SupervisedModule
from transferlab.nets import AirbenchNet
from transferlab.nets.airbench import WhiteningConv
from transferlab.nets.resnet import BasicBlock, resnet18
from transferlab.train import train


def test_zero_init_residual_makes_every_block_the_identity_on_its_shortcut():
    net = resnet18(num_classes=3, width=8, zero_init_residual=True, bn_momentum=0.5)
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    x = torch.randn(4, 8, 8, 8)
    first = blocks[0].train()
    assert torch.equal(first(x), torch.relu(first.shortcut(x)))  # the residual branch adds 0
    assert all(m.momentum == 0.5 for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    plain = resnet18(num_classes=3, width=8)
    assert all(
        float(b.bn2.weight.detach().min()) == 1.0 for b in plain.modules() if isinstance(b, BasicBlock)
    )


def test_whitening_filters_decorrelate_the_training_patches():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(3, 3, generator=generator)  # correlated colour channels
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(64, 3, 10, 10, generator=generator))
    layer = WhiteningConv(3, kernel_size=2, eps=1e-6)
    layer.initialize_from_data(images)
    with torch.no_grad():
        layer.bias.zero_()
        out = layer(images)[:, :12]  # the eigen-filters (the other 12 are their negatives)
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = flat.T @ flat / len(flat)
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), atol=2e-3, rtol=0)
    assert torch.equal(layer.weight[12:], -layer.weight[:12])
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_the_airbench_net_maps_32_pixel_images_to_logits_and_features():
    net = AirbenchNet(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10) and net.features(x).shape == (2, 256)
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert "backbone.0.weight" in frozen and len(frozen) == 7  # whitening + six BatchNorm scales


def test_lookahead_moves_the_slow_copy_and_sets_the_net_to_it():
    net = nn.Linear(2, 1)
    lookahead = Lookahead(every=5, peak=0.5, power=1.0)
    module = SimpleNamespace(net=net)
    lookahead.on_fit_start(None, module)
    slow = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    fast = {k: v.clone() for k, v in net.state_dict().items()}
    lookahead.on_train_batch_end(SimpleNamespace(global_step=3, estimated_stepping_batches=10), module)
    assert torch.equal(net.weight, fast["weight"])  # not a multiple of 5: untouched
    lookahead.on_train_batch_end(SimpleNamespace(global_step=5, estimated_stepping_batches=10), module)
    decay = 0.5 * (5 / 10)
    expected = decay * slow["weight"] + (1 - decay) * fast["weight"]
    torch.testing.assert_close(net.weight.detach(), expected)
    torch.testing.assert_close(lookahead.slow["weight"], expected)
    with torch.no_grad():
        net.weight.add_(3.0)
    lookahead.on_train_batch_end(SimpleNamespace(global_step=10, estimated_stepping_batches=10), module)
    torch.testing.assert_close(net.weight.detach(), expected)  # the last step: the slow weights
    restored = Lookahead()
    restored.load_state_dict(lookahead.state_dict())
    restored.on_fit_start(None, SimpleNamespace(net=nn.Linear(2, 1)))  # a resume keeps its copy
    assert torch.equal(restored.slow["weight"], lookahead.slow["weight"])


def test_flip_averaged_evaluation_and_the_batchnorm_learning_rate_scale():
    net = resnet18(num_classes=3, width=4)
    module = SupervisedModule(
        net, optimizer=lambda groups: torch.optim.SGD(groups, lr=0.1), flip_average=True, norm_lr_scale=64.0
    ).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = 0.5 * (net(x) + net(x.flip(-1)))
        torch.testing.assert_close(module.evaluation_forward(None, x), expected)
    groups = {g["name"]: g for g in module.parameter_groups()}
    norms = {id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert {id(p) for p in groups["net_norm_bias_norm"]["params"]} == norms
    assert groups["net_norm_bias_norm"]["lr_scale"] == 64.0 and groups["net"]["lr_scale"] == 1.0
    assert id(net.head.bias) in {id(p) for p in groups["net_norm_bias"]["params"]}  # not a norm
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len([p for p in net.parameters() if p.requires_grad])


def test_a_run_of_the_airbench_net_whitens_from_its_data_and_keeps_the_lookahead(fast_cfg):
    cfg = fast_cfg(
        "net=airbench",
        "net.widths=[8,16,16]",
        "data.image_size=32",
        "+callbacks.lookahead._target_=transferlab.callbacks.Lookahead",
        "trainer.max_epochs=2",
    )
    summary = train(cfg)
    checkpoint = torch.load(Path(summary["best"]["ckpt_path"]).parent / "last.ckpt", weights_only=True)
    whitening = checkpoint["state_dict"]["net.backbone.0.weight"]
    fresh = WhiteningConv(3, 2)
    assert not torch.equal(whitening, fresh.weight)  # set from the data, not the default init
    (state,) = [v for k, v in checkpoint["callbacks"].items() if k.startswith("Lookahead")]
    assert set(state["slow"]) >= {"backbone.0.weight", "head.weight"}
    assert summary["final"]["val/acc"] > 0.3  # four synthetic classes


@pytest.mark.parametrize("experiment", ["cifar10_fast", "cifar10_airbench"])
def test_the_fast_experiments_compose_with_their_recipe(experiment, tmp_path):
    from conftest import compose_config

    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    assert cfg.data.on_device == "auto" and cfg.trainer.precision == "bf16-mixed" and cfg.channels_last
    if experiment == "cifar10_airbench":
        assert cfg.net._target_ == "transferlab.nets.airbench" and cfg.method.flip_average
        assert cfg.callbacks.lookahead.every == 5 and cfg.method.scheduler.cycle_momentum is False
