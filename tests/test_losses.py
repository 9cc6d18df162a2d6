"""Regularizers against their formulas: values and gradients on fixed tensors."""

from __future__ import annotations

import pytest
import torch

from transferlab.losses import L2, L2SP, NoRegularizer


def params():
    torch.manual_seed(0)
    backbone = [("a", torch.nn.Parameter(torch.randn(3, 2))), ("b", torch.nn.Parameter(torch.randn(4)))]
    head = [("w", torch.nn.Parameter(torch.randn(2, 5)))]
    source = {"a": torch.randn(3, 2), "b": torch.randn(4)}
    return backbone, head, source


def test_l2sp_value_and_gradients_match_the_formula():
    backbone, head, source = params()
    alpha, beta = 0.3, 0.7
    value = L2SP(alpha, beta)(backbone, head, source)
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
    value = L2SP(1.0, 0.0)(backbone, [], source)
    assert value.item() == 0.0
    value.backward()
    assert all(torch.count_nonzero(p.grad) == 0 for _, p in backbone)


def test_l2_pulls_toward_zero():
    backbone, head, _ = params()
    value = L2(0.5, 0.2)(backbone, head, {})
    expected = 0.25 * sum((p**2).sum() for _, p in backbone) + 0.1 * (head[0][1] ** 2).sum()
    assert torch.allclose(value, expected)
    value.backward()
    assert torch.allclose(backbone[0][1].grad, 0.5 * backbone[0][1].detach())


def test_no_regularizer_is_zero_and_regularises_nothing():
    backbone, head, source = params()
    reg = NoRegularizer()
    assert reg(backbone, head, source).item() == 0.0
    assert not reg.regularises_backbone and not reg.regularises_head


def test_negative_weights_are_refused():
    with pytest.raises(ValueError, match="must be >= 0"):
        L2SP(backbone_weight=-1.0)
