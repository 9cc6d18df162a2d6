"""Alignment losses of domain adaptation against their formulas: values and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from transferlab.losses.alignment.cdan import ConditionalDomainAdversarialLoss, MultilinearMap
from transferlab.losses.alignment.coral import CORALLoss
from transferlab.losses.alignment.dan import MultipleKernelMMD
from transferlab.losses.alignment.dann import DomainAdversarialLoss


def bce_with_logits(z: torch.Tensor, label: float) -> torch.Tensor:
    """−[y·log σ(z) + (1 − y)·log(1 − σ(z))], written out."""
    return -(label * torch.log(torch.sigmoid(z)) + (1 - label) * torch.log(1 - torch.sigmoid(z)))


def test_domain_adversarial_loss_is_half_the_sum_of_the_two_domain_means_for_unequal_batches():
    torch.manual_seed(0)
    d = nn.Linear(5, 1)
    f_s, f_t = torch.randn(6, 5), torch.randn(3, 5)
    value, accuracy = DomainAdversarialLoss(d)(f_s, f_t)
    ganin_sum = bce_with_logits(d(f_s), 1.0).mean() + bce_with_logits(d(f_t), 0.0).mean()
    assert torch.allclose(value, 0.5 * ganin_sum)
    # the source is labelled 1: a discriminator that says "source" for everything is right on it
    always_source = nn.Linear(5, 1)
    nn.init.zeros_(always_source.weight)
    nn.init.constant_(always_source.bias, 10.0)
    _, accuracy = DomainAdversarialLoss(always_source)(f_s, f_t)
    assert accuracy.item() == pytest.approx(0.5)  # balanced: all of the source, none of the target


def test_the_reversal_flips_and_scales_the_features_gradient_but_not_the_discriminators():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    f_s = torch.randn(5, 4, requires_grad=True)
    f_t = torch.randn(7, 4, requires_grad=True)
    value, _ = DomainAdversarialLoss(d)(f_s, f_t, coefficient=0.3)
    grads = torch.autograd.grad(value, [f_s, f_t, *d.parameters()])
    plain = 0.5 * (bce_with_logits(d(f_s), 1.0).mean() + bce_with_logits(d(f_t), 0.0).mean())
    expected = torch.autograd.grad(plain, [f_s, f_t, *d.parameters()])
    assert torch.allclose(grads[0], -0.3 * expected[0], atol=1e-6)
    assert torch.allclose(grads[1], -0.3 * expected[1], atol=1e-6)
    for got, want in zip(grads[2:], expected[2:], strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_the_multilinear_map_is_the_flattened_outer_product():
    torch.manual_seed(0)
    f, g = torch.randn(3, 4), torch.softmax(torch.randn(3, 2), 1)
    mapped = MultilinearMap(4, 2)(f, g)
    assert mapped.shape == (3, 8)
    for n in range(3):
        for k in range(2):
            for j in range(4):
                assert mapped[n, k * 4 + j] == pytest.approx((g[n, k] * f[n, j]).item())


def test_the_randomized_map_preserves_inner_products_in_expectation():
    torch.manual_seed(0)
    a_f, b_f = torch.randn(1, 6), torch.randn(1, 6)
    a_g, b_g = torch.softmax(torch.randn(1, 3), 1), torch.softmax(torch.randn(1, 3), 1)
    exact = (a_f @ b_f.T).item() * (a_g @ b_g.T).item()
    estimates = []
    for seed in range(200):
        torch.manual_seed(seed)
        m = MultilinearMap(6, 3, randomized_dim=256)
        estimates.append((m(a_f, a_g) * m(b_f, b_g)).sum().item())
    mean = sum(estimates) / len(estimates)
    spread = (sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1)) ** 0.5
    assert abs(mean - exact) < 4 * spread / math.sqrt(len(estimates)) + 1e-3


def test_cdan_without_entropy_is_dann_on_the_conditioned_features():
    torch.manual_seed(0)
    d = nn.Linear(4 * 3, 1)
    m = MultilinearMap(4, 3)
    f_s, f_t, z_s, z_t = torch.randn(5, 4), torch.randn(7, 4), torch.randn(5, 3), torch.randn(7, 3)
    value, _ = ConditionalDomainAdversarialLoss(d, m)(f_s, f_t, z_s, z_t)
    h_s, h_t = m(f_s, torch.softmax(z_s, 1)), m(f_t, torch.softmax(z_t, 1))
    assert torch.allclose(value, DomainAdversarialLoss(d)(h_s, h_t)[0])


def test_cdan_e_weighs_each_sample_by_one_plus_exp_minus_entropy_within_its_domain():
    torch.manual_seed(0)
    d = nn.Linear(4 * 3, 1)
    m = MultilinearMap(4, 3)
    f_s, f_t = torch.randn(5, 4, requires_grad=True), torch.randn(7, 4)
    z_s = torch.randn(5, 3, requires_grad=True)
    z_t = torch.randn(7, 3)
    value, _ = ConditionalDomainAdversarialLoss(d, m, entropy_conditioning=True)(f_s, f_t, z_s, z_t)

    def term(f, z, label):
        g = torch.softmax(z, 1)
        w = 1 + torch.exp((g * torch.log(g)).sum(1))  # 1 + exp(−H(g))
        losses = bce_with_logits(d(m(f, g)).squeeze(1), label)
        return (w * losses).sum() / w.sum()

    expected = 0.5 * (term(f_s, z_s, 1.0) + term(f_t, z_t, 0.0))
    assert torch.allclose(value, expected)
    value.backward()
    assert z_s.grad is None  # g is detached: the predictions are trained by CE alone
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0


def gaussian_kernel_sum(a: torch.Tensor, b: torch.Tensor, sigma2s: list[torch.Tensor]) -> torch.Tensor:
    return sum(torch.exp(-((a - b) ** 2).sum() / (2 * s)) for s in sigma2s)


def test_mmd_quadratic_estimate_matches_the_unbiased_formula_written_out():
    torch.manual_seed(0)
    f_s = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    f_t = (torch.randn(5, 3, dtype=torch.float64) + 0.5).requires_grad_()
    multipliers = (0.5, 1.0, 2.0)
    value = MultipleKernelMMD(multipliers)(f_s, f_t)

    z = torch.cat([f_s, f_t])
    n = len(z)
    mean_d2 = sum(((z[i] - z[j]) ** 2).sum() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sigma2s = [m * mean_d2.detach() for m in multipliers]
    ss = sum(gaussian_kernel_sum(f_s[i], f_s[j], sigma2s) for i in range(4) for j in range(4) if i != j) / 12
    tt = sum(gaussian_kernel_sum(f_t[i], f_t[j], sigma2s) for i in range(5) for j in range(5) if i != j) / 20
    st = sum(gaussian_kernel_sum(f_s[i], f_t[j], sigma2s) for i in range(4) for j in range(5)) / 20
    expected = ss + tt - 2 * st
    assert torch.allclose(value, expected)
    got = torch.autograd.grad(value, [f_s, f_t])
    want = torch.autograd.grad(expected, [f_s, f_t])
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-8)


def test_mmd_linear_estimate_matches_its_formula_and_both_see_a_shift():
    torch.manual_seed(0)
    f_s, f_t = torch.randn(6, 2, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    value = MultipleKernelMMD((1.0,), linear=True)(f_s, f_t)
    pairs = [(f_s[2 * p], f_s[2 * p + 1], f_t[2 * p], f_t[2 * p + 1]) for p in range(3)]
    mean_d2 = sum(
        ((s1 - s2) ** 2).sum() + ((t1 - t2) ** 2).sum() + ((s1 - t2) ** 2).sum() + ((s2 - t1) ** 2).sum()
        for s1, s2, t1, t2 in pairs
    ) / (4 * 3)
    k = lambda a, b: torch.exp(-((a - b) ** 2).sum() / (2 * mean_d2))  # noqa: E731
    expected = sum(k(s1, s2) + k(t1, t2) - k(s1, t2) - k(s2, t1) for s1, s2, t1, t2 in pairs) / 3
    assert torch.allclose(value, expected)

    source = torch.randn(400, 8)
    same, shifted = torch.randn(400, 8), torch.randn(400, 8) + 1.0
    for mmd in (MultipleKernelMMD(), MultipleKernelMMD(linear=True)):
        assert abs(mmd(source, same).item()) < 0.05 < mmd(source, shifted).item()


def test_coral_value_and_gradient_match_sun_and_saenko():
    torch.manual_seed(0)
    f_s = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    f_t = 2 * torch.randn(9, 3, dtype=torch.float64)
    value = CORALLoss()(f_s, f_t)
    c_s, c_t = torch.cov(f_s.T), torch.cov(f_t.T)  # unbiased, 1/(N − 1)
    assert torch.allclose(value, ((c_s - c_t) ** 2).sum() / (4 * 9))
    value.backward()
    # ∂L/∂D_S = 1/(d²(n_s − 1))·(D_S − 1·mean(D_S))·(C_S − C_T)   (the paper's eq. 4)
    centred = f_s.detach() - f_s.detach().mean(0)
    expected = centred @ (c_s.detach() - c_t) / (9 * 5)
    assert torch.allclose(f_s.grad, expected)
    assert CORALLoss()(f_t, f_t).item() == 0.0


def test_batches_too_small_for_a_statistic_are_refused_naming_the_sizes():
    with pytest.raises(ValueError, match=r"at least two samples per domain \(got 1 and 4\)"):
        MultipleKernelMMD()(torch.randn(1, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"at least two samples \(got 1\)"):
        CORALLoss()(torch.randn(1, 3), torch.randn(4, 3))
