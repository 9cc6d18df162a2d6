"""net=timm: any timm model as a Classifier, its weights from a local file (written here) or the
hub, its data settings carried into the data config, and every family running on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import PAIR, build_module
from transferlab.nets.timm_net import apply_net_data, data_settings, timm_net
from transferlab.train import train
from transferlab.utils.errors import CheckpointError, ConfigError

timm = pytest.importorskip("timm")
ARCH = "test_resnet"  # timm's smallest ResNet (0.4 M parameters), stages layer1..layer4


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A ``.safetensors`` file of ``test_resnet`` with its own 1,000-class classifier, as the hub
    stores one, and its state dict."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(ARCH, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("timm") / f"{ARCH}.safetensors"
    save_file(state, str(path))
    return path, state


def test_a_timm_model_loads_its_file_drops_its_classifier_and_gets_a_fresh_head(weights):
    path, state = weights
    net = timm_net(num_classes=7, arch=ARCH, weights=str(path))
    backbone = net.backbone.state_dict()
    assert all(torch.equal(backbone[k], state[k]) for k in backbone)  # every backbone tensor, the file's
    assert "fc.weight" in state and "fc.weight" not in backbone  # its classifier dropped
    assert net.feature_dim == 96 and net.head.out_features == 7 and net.pretrained
    assert net.stage_layers == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    random = timm_net(num_classes=7, arch=ARCH)
    assert not random.pretrained and not torch.equal(
        random.backbone.state_dict()["conv1.0.weight"], state["conv1.0.weight"]
    )


def test_a_torch_file_under_state_dict_loads_too(weights, tmp_path):
    _, state = weights
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "w.pth")
    net = timm_net(num_classes=3, arch=ARCH, weights=str(tmp_path / "w.pth"))
    assert torch.equal(net.backbone.state_dict()["conv1.0.weight"], state["conv1.0.weight"])


def test_bad_input_is_one_line_naming_the_key(weights, tmp_path, monkeypatch):
    path, _ = weights
    with pytest.raises(ConfigError, match=r"net\.arch=resnet_nope is not a timm model; e\.g\. .*resnet"):
        timm_net(num_classes=3, arch="resnet_nope")
    with pytest.raises(CheckpointError, match=r"net\.weights=.* does not fit timm's test_convnext"):
        timm_net(num_classes=3, arch="test_convnext", weights=str(path))
    with pytest.raises(CheckpointError, match=r"net\.weights=.*missing\.safetensors: no such file"):
        timm_net(num_classes=3, arch=ARCH, weights=str(tmp_path / "missing.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match=r"cannot be read as weights"):
        timm_net(num_classes=3, arch=ARCH, weights=str(tmp_path / "junk.safetensors"))
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as without the hub
    with pytest.raises(CheckpointError) as err:
        timm_net(num_classes=3, arch="resnet18.a1_in1k", weights="hub")
    message = str(err.value)
    assert message.startswith("net.weights=hub: fetching resnet18.a1_in1k") and "\n" not in message
    assert "net.weights=/path/to/resnet18.safetensors" in message
    with pytest.raises(ConfigError, match=r"net\.data_config=some"):
        timm_net(num_classes=3, arch=ARCH, data_config="some")


def test_the_weights_data_settings_go_into_the_data_config_unless_the_command_line_set_them(
    fast_cfg, weights
):
    path, _ = weights
    expected = timm.get_pretrained_cfg(ARCH).to_dict()
    assert data_settings(ARCH) == {
        "mean": list(expected["mean"]),
        "std": list(expected["std"]),
        "image_size": expected["input_size"][-1],
    }
    timm_args = ["net=timm", f"net.arch={ARCH}", f"net.weights={path}"]
    cfg = fast_cfg(*timm_args, "++data.mean=[0.1,0.2,0.3]")
    size = cfg.data.image_size
    apply_net_data(cfg, given=["data.mean"])
    assert list(cfg.data.mean) == [0.1, 0.2, 0.3] and list(cfg.data.std) == list(expected["std"])
    assert cfg.data.image_size == size  # normalization only, by default
    every = fast_cfg(*timm_args, "net.data_config=all")
    apply_net_data(every)
    assert every.data.image_size == expected["input_size"][-1] == 160
    pair = fast_cfg(*PAIR, *timm_args)
    apply_net_data(pair)
    assert list(pair.data.source.mean) == list(pair.data.target.mean) == list(expected["mean"])
    scratch = fast_cfg("net=timm", f"net.arch={ARCH}", "++data.mean=[0.1,0.2,0.3]")
    apply_net_data(scratch)  # random weights expect no statistics
    assert list(scratch.data.mean) == [0.1, 0.2, 0.3]


TIMM = ["net=timm", f"net.arch={ARCH}", "data.image_size=32"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["method/regularizer=delta", "method.regularizer.layers=[layer2,layer3]", "method.lam=0.001"],
        ["method/regularizer=l2sp", "method.lam=0.01"],
        ["method/regularizer=bss", "method.lam=0.001"],
    ],
    ids=["delta-at-stages", "l2sp", "bss"],
)
def test_every_fine_tuning_regularizer_runs_on_a_timm_net_from_its_file(fast_cfg, weights, overrides):
    path, _ = weights
    summary = train(fast_cfg(*TIMM, f"net.weights={path}", "method=finetune", *overrides))
    assert summary["final"]["train/reg"] > 0  # the regularizer read the source (the file's weights)
    assert summary["final"]["drift/layer3"] > 0  # how far each named stage moved from it
    assert torch.isfinite(torch.tensor(summary["final"]["test/acc"]))


def test_a_regularizer_s_layer_the_timm_net_lacks_names_its_stages(fast_cfg, weights):
    path, _ = weights
    cfg = fast_cfg(
        *TIMM, f"net.weights={path}", "method=finetune", "method/regularizer=delta",
        "method.regularizer.layers=[stage3]",
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"no layer 'stage3'.*its stages \['act1', 'layer1'"):
        build_module(cfg)


def test_distillation_reads_a_timm_teacher_s_feature_maps(fast_cfg, tmp_path):
    teacher_dir = tmp_path / "teacher"
    train(fast_cfg(*TIMM, output_dir=teacher_dir))
    summary = train(
        fast_cfg(
            *TIMM,
            "method=distill",
            "distill=at",
            f"method.teacher_ckpt={teacher_dir}",
            "method.losses.at.layers=[layer2,layer3]",
            "method.teacher_input=augmented",
        )
    )
    assert summary["final"]["train/at"] > 0  # the student's and the teacher's maps at layer2, layer3


@pytest.mark.parametrize("method", ["dann", "mdd"])
def test_adaptation_runs_on_a_timm_net(fast_cfg, method, tmp_path):
    summary = train(fast_cfg(*PAIR, "net=timm", f"net.arch={ARCH}", f"method={method}"))
    assert summary["final"]["train/alignment"] != 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final"]["test/acc"] == summary["final"]["test/acc"]


def test_layer_wise_learning_rate_decay_follows_timm_s_grouping(fast_cfg, weights):
    path, _ = weights
    module, _ = build_module(
        fast_cfg(*TIMM, f"net.weights={path}", "method=finetune", "method.layer_decay=0.5", "method.lam=0")
    )
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    lr_of = {group["name"]: group["lr"] for group in optimizer.param_groups}
    head = lr_of["head"]
    # the stem (depth 0), layer1..layer4 (1..4) of timm's grouping: δ^(5 − d) of the head's rate
    for depth in range(5):
        assert lr_of[f"backbone.{depth}"] == pytest.approx(head * 0.5 ** (5 - depth)), depth
    with pytest.raises(ConfigError, match=r"method\.layer_decay=1\.5 must be in \(0, 1\]"):
        build_module(fast_cfg(*TIMM, "method=finetune", "method.layer_decay=1.5"))
