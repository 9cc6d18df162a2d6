"""Nets: the features/head contract, output shapes, and known parameter counts."""

from __future__ import annotations

import pytest
import torch

from transferlab import nets

# parameter counts of the reference architectures with 100 classes (CRD / WRN papers)
REFERENCE_PARAMS_M = {
    "resnet20": 0.28,
    "resnet8x4": 1.23,
    "resnet32x4": 7.43,
    "wrn_16_2": 0.70,
    "wrn_40_2": 2.26,
    "resnet18": 11.22,
}


@pytest.mark.parametrize("name", ["cnn", *REFERENCE_PARAMS_M])
def test_features_and_head_compose_to_the_forward_pass(name):
    torch.manual_seed(0)
    net = getattr(nets, name)(num_classes=7).eval()
    x = torch.randn(3, 3, 32, 32)
    features = net.features(x)
    assert features.shape == (3, net.feature_dim)
    assert net.head.in_features == net.feature_dim and net.num_classes == 7
    assert torch.allclose(net(x), net.head(features))


@pytest.mark.parametrize("name", list(REFERENCE_PARAMS_M))
def test_parameter_counts_match_the_reference_architectures(name):
    net = getattr(nets, name)(num_classes=100)
    millions = sum(p.numel() for p in net.parameters()) / 1e6
    assert millions == pytest.approx(REFERENCE_PARAMS_M[name], rel=0.02)


def test_cnn_is_the_articles_layout():
    net = nets.cnn(num_classes=10, input_size=32)
    convs = [m for m in net.backbone if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in net.backbone if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [64, 128]
    assert [f.out_features for f in fcs] == [1024] and fcs[0].in_features == 128 * 8 * 8
    with pytest.raises(ValueError, match="multiple of 4"):
        nets.cnn(num_classes=10, input_size=30)


def test_lenet_is_the_cdan_digits_net_with_its_parameter_count():
    net = nets.lenet(num_classes=10, in_channels=1, input_size=28).eval()
    # thuml/CDAN's LeNet: 20·25+20, 50·20·25+50, 800·500+500 and the 500·10+10 classifier
    assert sum(p.numel() for p in net.parameters()) == 520 + 25_050 + 400_500 + 5_010
    x = torch.randn(2, 1, 28, 28)
    assert net.features(x).shape == (2, 500) and torch.allclose(net(x), net.head(net.features(x)))
    with pytest.raises(ValueError, match="input_size=30 must leave whole maps"):
        nets.lenet(num_classes=10, input_size=30)


def test_reset_head_gives_a_fresh_head_and_keeps_the_backbone():
    net = nets.resnet20(num_classes=10)
    backbone_before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    net.reset_head(100)
    assert net.num_classes == 100 and net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key])


def test_mlp_flattens_images_into_its_hidden_layers():
    net = nets.mlp(num_classes=10, in_channels=1, input_size=28, hidden=[800, 800], dropout=0.2).eval()
    x = torch.randn(4, 1, 28, 28)
    assert net.features(x).shape == (4, 800) and net(x).shape == (4, 10)
    linear = [m for m in net.backbone if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 800), (800, 800)]
    # Hinton et al.'s 784-800-800-10 net: 784·800 + 800 + 800·800 + 800 + 800·10 + 10 parameters
    assert sum(p.numel() for p in net.parameters()) == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10
    with pytest.raises(ValueError, match="hidden must list at least one layer"):
        nets.mlp(num_classes=10, hidden=[])


@pytest.mark.parametrize(("arch", "classifier"), [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")])
def test_a_torchvision_net_is_its_architecture_up_to_a_fresh_head(arch, classifier):
    import torchvision

    net = nets.torchvision_net(num_classes=5, arch=arch).eval()
    reference = torchvision.models.get_model(arch)
    last = reference.get_submodule(classifier)
    # every tensor of the architecture but its last linear layer, which is now the head
    assert set(net.backbone.state_dict()) == set(reference.state_dict()) - {
        f"{classifier}.weight",
        f"{classifier}.bias",
    }
    assert net.feature_dim == last.in_features and net.num_classes == 5 and not net.pretrained
    x = torch.randn(2, 3, 64, 64)
    assert net.features(x).shape == (2, last.in_features)
    assert torch.allclose(net(x), net.head(net.features(x)))


def test_torchvision_weights_from_a_state_dict_file_are_loaded_exactly(tmp_path):
    import torchvision

    torch.manual_seed(3)
    saved = torchvision.models.resnet18()
    torch.save(saved.state_dict(), tmp_path / "resnet18.pth")
    net = nets.torchvision_net(num_classes=3, arch="resnet18", weights=str(tmp_path / "resnet18.pth"))
    assert net.pretrained
    for name, value in net.backbone.state_dict().items():
        assert torch.equal(value, saved.state_dict()[name]), name
    assert net.head.out_features == 3  # a fresh head, not the file's 1000 classes


def test_a_state_dict_file_of_another_architecture_is_refused_listing_its_tensors(tmp_path):
    import torchvision

    from transferlab.utils.errors import CheckpointError

    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(
        CheckpointError, match=r"does not fit torchvision's resnet18 \(\d+ mismatches: unexpected layer1.2"
    ):
        nets.torchvision_net(num_classes=3, arch="resnet18", weights=str(tmp_path / "resnet34.pth"))


def test_torchvision_names_and_the_small_input_stem_are_checked():
    from transferlab.utils.errors import ConfigError

    with pytest.raises(ConfigError, match=r"net.arch=resnet9000 is not a torchvision classification model"):
        nets.torchvision_net(num_classes=3, arch="resnet9000")
    with pytest.raises(ConfigError, match=r"net.weights=IMAGENET9K is not a weights name of resnet18"):
        nets.torchvision_net(num_classes=3, arch="resnet18", weights="IMAGENET9K")
    with pytest.raises(ConfigError, match="adjusts a ResNet's stem"):
        nets.torchvision_net(num_classes=3, arch="mobilenet_v3_small", small_input=True)
    small = nets.torchvision_net(num_classes=3, arch="resnet18", small_input=True).eval()
    assert small.backbone.conv1.stride == (1, 1) and isinstance(small.backbone.maxpool, torch.nn.Identity)
    seen = {}
    small.backbone.layer4.register_forward_hook(lambda m, i, o: seen.update(maps=o.shape))
    small(torch.randn(1, 3, 32, 32))
    assert seen["maps"][-2:] == (4, 4)  # not 1x1: the stem no longer divides 32 px by 4
