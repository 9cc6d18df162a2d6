"""Regularizers against their formulas: values and gradients on fixed tensors."""

from __future__ import annotations

import pytest
import torch

from transferlab.losses.regularizers.base import RegularizerInputs as Inputs
from transferlab.losses.regularizers.bss import BatchSpectralShrinkage
from transferlab.losses.regularizers.delta import FeatureMapDistance
from transferlab.losses.regularizers.l2 import L2
from transferlab.losses.regularizers.l2sp import L2SP
from transferlab.losses.regularizers.none import NoRegularizer


def params():
    torch.manual_seed(0)
    backbone = [("a", torch.nn.Parameter(torch.randn(3, 2))), ("b", torch.nn.Parameter(torch.randn(4)))]
    head = [("w", torch.nn.Parameter(torch.randn(2, 5)))]
    source = {"a": torch.randn(3, 2), "b": torch.randn(4)}
    return backbone, head, source


def test_l2sp_value_and_gradients_match_the_formula():
    backbone, head, source = params()
    alpha, beta = 0.3, 0.7
    value = L2SP(alpha, beta)(Inputs(backbone, head, source))
    expected = alpha / 2 * sum(((p - source[n]) ** 2).sum() for n, p in backbone)
    expected = expected + beta / 2 * (head[0][1] ** 2).sum()
    assert torch.allclose(value, expected)
    value.backward()
    for name, p in backbone:
        assert torch.allclose(p.grad, alpha * (p.detach() - source[name]))
    assert torch.allclose(head[0][1].grad, beta * head[0][1].detach())


def test_l2sp_is_exactly_zero_at_the_source_weights():
    backbone, _, _ = params()
    source = {n: p.detach().clone() for n, p in backbone}
    value = L2SP(1.0, 0.0)(Inputs(backbone, [], source))
    assert value.item() == 0.0
    value.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for _, p in backbone)


def test_l2_pulls_toward_zero():
    backbone, head, _ = params()
    value = L2(0.5, 0.2)(Inputs(backbone, head))
    expected = 0.25 * sum((p**2).sum() for _, p in backbone) + 0.1 * (head[0][1] ** 2).sum()
    assert torch.allclose(value, expected)
    value.backward()
    assert torch.allclose(backbone[0][1].grad, 0.5 * backbone[0][1].detach())


def test_no_regularizer_is_zero_and_regularises_nothing():
    backbone, head, source = params()
    reg = NoRegularizer()
    assert reg(Inputs(backbone, head, source)).item() == 0.0
    assert not reg.regularises_backbone and not reg.regularises_head


def test_negative_weights_are_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        L2SP(backbone_weight=-1.0)


def test_regularizers_declare_what_they_read():
    assert L2().needs == frozenset() and NoRegularizer().needs == frozenset()
    assert L2SP().needs == {"source_weights"}
    assert BatchSpectralShrinkage().needs == {"features"}
    assert FeatureMapDistance().needs == {"feature_maps"} and FeatureMapDistance().layers == ("",)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_bss_is_the_sum_of_the_k_smallest_squared_singular_values(k):
    torch.manual_seed(0)
    # features with known singular values: U·diag(σ)·Vᵀ with orthonormal U (8x5), V (5x5)
    u, _ = torch.linalg.qr(torch.randn(8, 5))
    v, _ = torch.linalg.qr(torch.randn(5, 5))
    sigma = torch.tensor([5.0, 4.0, 3.0, 2.0, 0.5])
    features = (u @ torch.diag(sigma) @ v.T).requires_grad_()
    value = BatchSpectralShrinkage(k=k)(Inputs([], [], features=features))
    assert value.item() == pytest.approx(float((sigma[-k:] ** 2).sum()), rel=1e-5)
    value.backward()
    # d(σ_i²)/dF = 2·σ_i·u_i·v_iᵀ, summed over the k smallest
    expected = sum(2 * sigma[i] * torch.outer(u[:, i], v[:, i]) for i in range(5 - k, 5))
    assert torch.allclose(features.grad, expected, atol=1e-4)


def test_bss_refuses_k_below_one():
    with pytest.raises(ValueError, match="k=0 must be >= 1"):
        BatchSpectralShrinkage(k=0)


def maps():
    torch.manual_seed(1)
    target = {"a": torch.randn(2, 3, 4, 4, requires_grad=True), "": torch.randn(2, 6, requires_grad=True)}
    source = {"a": torch.randn(2, 3, 4, 4), "": torch.randn(2, 6)}
    return target, source


def test_delta_is_half_the_squared_feature_map_distance_summed_over_layers():
    target, source = maps()
    value = FeatureMapDistance(layers=["a", ""])(
        Inputs([], [], feature_maps=target, source_feature_maps=source)
    )
    expected = 0.5 * sum(((target[k] - source[k]) ** 2).sum() for k in ("a", ""))
    assert torch.allclose(value, expected)
    value.backward()
    for k in ("a", ""):
        assert torch.allclose(target[k].grad, target[k].detach() - source[k])


def test_delta_with_attention_weighs_each_channel_by_c_times_w_over_the_area():
    target, source = maps()
    reg = FeatureMapDistance(layers=["a"], attention=True)
    weights = torch.tensor([0.5, 0.3, 0.2])
    reg.channel_weights = {"a": weights}
    value = reg(Inputs([], [], feature_maps=target, source_feature_maps=source))
    per_channel = ((target["a"] - source["a"]) ** 2).sum(dim=(2, 3))  # (N, C)
    expected = 0.5 * (3 * weights * per_channel / 16).sum()
    assert torch.allclose(value, expected)
    value.backward()
    grad = 3 * weights.view(1, 3, 1, 1) * (target["a"].detach() - source["a"]) / 16
    assert torch.allclose(target["a"].grad, grad)
    # uniform attention (1/C each) is the plain distance over the map's area
    reg.channel_weights = {}
    uniform = reg(Inputs([], [], feature_maps=target, source_feature_maps=source))
    assert torch.allclose(uniform, 0.5 * ((target["a"] - source["a"]) ** 2).sum() / 16)
