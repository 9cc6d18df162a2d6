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


def test_reset_head_gives_a_fresh_head_and_keeps_the_backbone():
    net = nets.resnet20(num_classes=10)
    backbone_before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    net.reset_head(100)
    assert net.num_classes == 100 and net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key])
