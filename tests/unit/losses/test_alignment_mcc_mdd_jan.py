"""MCC, MDD and JAN against their formulas written out (values and gradients), CDAN's reversal and
its authors' CDAN+E, and the CDAN digits protocol's schedule of the alignment term."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import at_step
from transferlab.losses.alignment.cdan import ConditionalDomainAdversarialLoss, MultilinearMap
from transferlab.losses.alignment.jan import JointMultipleKernelMMD
from transferlab.losses.alignment.mcc import MinimumClassConfusion
from transferlab.losses.alignment.mdd import MarginDisparityDiscrepancy


def bce_with_logits(z: torch.Tensor, label: float) -> torch.Tensor:
    return -(label * torch.log(torch.sigmoid(z)) + (1 - label) * torch.log(1 - torch.sigmoid(z)))


def test_mcc_is_the_mean_off_diagonal_mass_of_the_weighted_row_normalised_confusion():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = 2.5
    value = MinimumClassConfusion(t)(logits)
    p = [[math.exp(v / t) for v in row] for row in logits.tolist()]
    p = [[v / sum(row) for v in row] for row in p]
    h = [-sum(v * math.log(v) for v in row) for row in p]
    w = [1 + math.exp(-x) for x in h]
    w = [6 * x / sum(w) for x in w]
    c = [[sum(w[n] * p[n][j] * p[n][k] for n in range(6)) for k in range(4)] for j in range(4)]
    c = [[v / sum(row) for v in row] for row in c]
    expected = sum(c[j][k] for j in range(4) for k in range(4) if j != k) / 4
    assert value.item() == pytest.approx(expected, rel=1e-9)
    value.backward()
    assert logits.grad.abs().sum() > 0
    confident = torch.eye(4).repeat(2, 1) * 100  # one-hot predictions: no confusion
    assert MinimumClassConfusion(1.0)(confident).item() == pytest.approx(0.0, abs=1e-9)
    uniform = torch.zeros(8, 4)  # every class confused with every other: (K − 1)/K
    assert MinimumClassConfusion(1.0)(uniform).item() == pytest.approx(3 / 4)


def test_mdd_is_the_negated_margin_disparity_and_the_head_and_features_pull_apart():
    torch.manual_seed(0)
    head = nn.Linear(5, 3)
    f_s = torch.randn(4, 5, requires_grad=True)
    f_t = torch.randn(6, 5, requires_grad=True)
    logits_s, logits_t = torch.randn(4, 3), torch.randn(6, 3)
    loss, _ = MarginDisparityDiscrepancy(head, margin=4.0)(f_s, f_t, logits_s, logits_t, coefficient=0.3)
    h_s, h_t = logits_s.argmax(1), logits_t.argmax(1)
    p_s, p_t = F.softmax(head(f_s), 1), F.softmax(head(f_t), 1)
    disparity = 4.0 * torch.log(p_s[range(4), h_s]).mean() + torch.log(1 - p_t[range(6), h_t] + 1e-6).mean()
    assert loss.item() == pytest.approx(-disparity.item(), rel=1e-5)
    grads = torch.autograd.grad(loss, [f_s, f_t, *head.parameters()])
    plain = torch.autograd.grad(-disparity, [f_s, f_t, *head.parameters()])
    # the head descends −D (ascends D); the features get the reversed gradient, scaled by c
    for got, want in zip(grads[2:], plain[2:], strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(grads[0], -0.3 * plain[0], atol=1e-5)
    assert torch.allclose(grads[1], -0.3 * plain[1], atol=1e-5)


def gauss(a: torch.Tensor, b: torch.Tensor, sigma2: float) -> torch.Tensor:
    return torch.exp(-((a - b) ** 2).sum() / (2 * sigma2))


def test_jmmd_is_the_unbiased_mmd_of_the_product_kernel_of_features_and_predictions():
    torch.manual_seed(0)
    f_s = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    f_t = torch.randn(5, 3, dtype=torch.float64) + 0.5
    z_s, z_t = torch.randn(4, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    multipliers = (0.5, 1.0, 2.0)
    value = JointMultipleKernelMMD(multipliers, prediction_sigma=0.92)(f_s, f_t, z_s, z_t)
    z, g = torch.cat([f_s, f_t]), torch.cat([F.softmax(z_s, 1), F.softmax(z_t, 1)])
    n = 9
    mean_d2 = sum(((z[i] - z[j]) ** 2).sum() for i in range(n) for j in range(n) if i != j) / (n * (n - 1))

    def k(i: int, j: int) -> torch.Tensor:
        features = sum(gauss(z[i], z[j], m * mean_d2.detach()) for m in multipliers)
        return features * gauss(g[i], g[j], 0.92**2)

    ss = sum(k(i, j) for i in range(4) for j in range(4) if i != j) / 12
    tt = sum(k(i, j) for i in range(4, 9) for j in range(4, 9) if i != j) / 20
    st = sum(k(i, j) for i in range(4) for j in range(4, 9)) / 20
    expected = ss + tt - 2 * st
    assert value.item() == pytest.approx(expected.item(), rel=1e-9)
    (grad,) = torch.autograd.grad(value, f_s)
    (want,) = torch.autograd.grad(expected, f_s)
    assert torch.allclose(grad, want, atol=1e-9)


def test_jmmd_sees_a_shift_in_the_predictions_that_dans_mmd_cannot():
    torch.manual_seed(0)
    f = torch.randn(16, 4)
    same_features = JointMultipleKernelMMD()(f[:8], f[8:], torch.zeros(8, 3), torch.zeros(8, 3))
    logits_t = torch.zeros(8, 3)
    logits_t[:, 0] = 10  # the same features, the target's predictions all one class
    shifted = JointMultipleKernelMMD()(f[:8], f[8:], torch.zeros(8, 3), logits_t)
    assert shifted > same_features + 0.05
    linear = JointMultipleKernelMMD(linear=True)(f[:8], f[8:] + 3, torch.zeros(8, 3), logits_t)
    assert linear > 0


def cdan_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = torch.randn(5, 4, generator=g), torch.randn(7, 4, generator=g)
    z_s = torch.randn(5, 3, generator=g).requires_grad_()
    z_t = torch.randn(7, 3, generator=g).requires_grad_()
    return f_s.requires_grad_(), f_t.requires_grad_(), z_s, z_t


def test_cdans_reversal_flips_and_scales_the_features_gradient_but_not_the_discriminators():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))
    m = MultilinearMap(4, 3)
    f_s, f_t, z_s, z_t = cdan_inputs()
    value, _ = ConditionalDomainAdversarialLoss(d, m)(f_s, f_t, z_s, z_t, coefficient=0.4)
    grads = torch.autograd.grad(value, [f_s, f_t, *d.parameters()])
    g_s, g_t = F.softmax(z_s, 1).detach(), F.softmax(z_t, 1).detach()
    plain = 0.5 * (bce_with_logits(d(m(f_s, g_s)), 1.0).mean() + bce_with_logits(d(m(f_t, g_t)), 0.0).mean())
    want = torch.autograd.grad(plain, [f_s, f_t, *d.parameters()])
    assert torch.allclose(grads[0], -0.4 * want[0], atol=1e-6)  # a missing or flipped reversal fails
    assert torch.allclose(grads[1], -0.4 * want[1], atol=1e-6)
    for got, expected in zip(grads[2:], want[2:], strict=True):
        assert torch.allclose(got, expected, atol=1e-6)


def test_the_authors_cdan_e_sends_a_reversed_gradient_through_the_entropy_weights():
    torch.manual_seed(0)
    d, m = nn.Linear(12, 1), MultilinearMap(4, 3)
    f_s, f_t, z_s, z_t = cdan_inputs()
    detached = ConditionalDomainAdversarialLoss(d, m, entropy_conditioning=True)
    authors = ConditionalDomainAdversarialLoss(d, m, entropy_conditioning=True, reverse_entropy_gradient=True)
    a, _ = detached(f_s, f_t, z_s, z_t, coefficient=0.5)
    b, _ = authors(f_s, f_t, z_s, z_t, coefficient=0.5)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)  # the same value: only the gradients differ
    assert torch.autograd.grad(a, z_s, allow_unused=True)[0] is None  # the weights are detached
    (grad,) = torch.autograd.grad(b, z_s)

    def loss_through_weights(z: torch.Tensor) -> torch.Tensor:  # the weights live, the normalisers not
        g_s, g_t = F.softmax(z, 1), F.softmax(z_t, 1).detach()
        w_s = 1 + torch.exp((g_s * torch.log(g_s)).sum(1))
        w_t = 1 + torch.exp((g_t * torch.log(g_t)).sum(1))
        d_s = bce_with_logits(d(m(f_s, g_s.detach())).squeeze(1), 1.0)
        d_t = bce_with_logits(d(m(f_t, g_t)).squeeze(1), 0.0)
        return 0.5 * ((w_s * d_s).sum() / w_s.sum().detach() + (w_t * d_t).sum() / w_t.sum().detach())

    (want,) = torch.autograd.grad(loss_through_weights(z_s), z_s)
    assert torch.allclose(grad, -0.5 * want, atol=1e-6)  # reversed and scaled by c, as theirs


def test_the_alignment_joins_after_start_epoch_and_the_warm_up_counts_from_there(fast_cfg):
    from conftest import PAIR, build_module

    module, _ = build_module(fast_cfg(*PAIR, "method=dann", "method.start_epoch=1", "method.warmup=0.5"))
    # 1,000 steps of 100 an epoch; the alignment from step 100; p over half the remaining 900
    for epoch, step, weight, progress in [
        (0, 50, 0.0, 0.0),
        (1, 100, 1.0, 0.0),
        (3, 325, 1.0, 0.5),
        (6, 600, 1.0, 1.0),
    ]:
        at_step(module, epoch, step, 1000, 100)
        assert module.alignment_weight() == weight and module.progress() == pytest.approx(progress)
    at_step(module, 2, 280, 1000, 100)
    assert module.reversal_coefficient() == pytest.approx(2 / (1 + math.exp(-10 * 180 / 450)) - 1)


def authors_cdan_coefficient(iteration: int) -> float:
    """thuml/CDAN's ``calc_coeff(iter_num)`` (high 1, low 0, alpha 10, max_iter 10,000), called in
    ``train_uspsmnist.py`` with ``num_iter·(epoch − start_epoch) + batch_idx``: the global step."""
    return 2.0 / (1.0 + math.exp(-10.0 * iteration / 10000.0)) - 1.0


def test_the_cdan_protocol_s_warm_up_is_the_authors_on_their_run_and_keeps_its_shape_on_a_subset(fast_cfg):
    from conftest import PAIR, build_module
    from transferlab.utils.config import apply_protocol

    cfg = fast_cfg(*PAIR, "+protocol=cdan_digits", "method=cdan")
    apply_protocol(cfg)  # as train does: the authors' settings for their own methods
    module, _ = build_module(cfg)
    assert (module.warmup, module.warmup_from) == (pytest.approx(10000 / 9370, abs=1e-4), "run")
    # their run: full MNIST in batches of 64 is 937 iterations an epoch, 10 epochs, aligned from the 2nd
    for epoch, batch in [(1, 0), (1, 500), (5, 3), (9, 936)]:
        at_step(module, epoch, 937 * epoch + batch, 9370, 937)
        want = authors_cdan_coefficient(937 * epoch + batch)
        assert module.reversal_coefficient() == pytest.approx(want, abs=1e-4)
    assert authors_cdan_coefficient(937) == pytest.approx(0.437, abs=1e-3)  # already when it joins
    # the offline subsets: 71 steps an epoch; the same fraction of the run, the same coefficient
    at_step(module, 9, 709, 710, 71)
    assert module.reversal_coefficient() == pytest.approx(authors_cdan_coefficient(9369), abs=2e-3)
    assert module.reversal_coefficient() > 0.99  # not 0.31, where 10,000 iterations were counted


def test_mdd_s_warm_up_is_the_authors_on_their_digits_run(fast_cfg):
    """The authors' (thuml/MDD, TLlib) c_i = 0.1·(2/(1 + exp(−i/1000)) − 1) from the first
    iteration, on TLlib's digits runs of 20 epochs × 2,500 iterations."""
    from conftest import PAIR, build_module

    module, _ = build_module(fast_cfg(*PAIR, "method=mdd"))
    for i in (0, 700, 2500, 6000, 49_999):
        at_step(module, i // 2500, i, 50_000, 2500)
        want = 0.1 * (2.0 / (1.0 + math.exp(-i / 1000.0)) - 1.0)
        assert module.reversal_coefficient() == pytest.approx(want, abs=1e-5)


def test_a_warm_up_that_is_not_a_positive_fraction_of_the_run_is_one_line(fast_cfg):
    from conftest import PAIR, build_module
    from transferlab.utils.errors import ConfigError

    for override, key in [
        ("method.warmup=0", "method.warmup=0"),
        ("method.warmup_from=epoch", "warmup_from"),
    ]:
        with pytest.raises(ConfigError, match=key):
            build_module(fast_cfg(*PAIR, "method=dann", override))


def test_mcc_s_gradient_treats_the_sample_weights_as_constants():
    """The reference library detaches the entropy weights (``sample_weight = 1 + exp(−H).detach()``
    there): the logits' gradient is that of the loss with the weights frozen at their values."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(7, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = 2.5
    (ours,) = torch.autograd.grad(MinimumClassConfusion(t)(logits), logits)
    with torch.no_grad():
        p = torch.softmax(logits / t, dim=1)
        w = 1 + torch.exp((p * p.log()).sum(1))  # 1 + exp(−H(p)), computed apart: constants
        w = 7 * w / w.sum()
    q = torch.softmax(logits / t, dim=1)
    confusion = (q * w[:, None]).T @ q
    confusion = confusion / confusion.sum(1, keepdim=True)
    frozen = (confusion.sum() - confusion.trace()) / 4
    (reference,) = torch.autograd.grad(frozen, logits)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_linear_jmmd_is_the_mean_over_disjoint_pairs_written_out_with_its_gradient():
    """Gretton et al.'s linear-time estimate on the joint kernel, pair by pair:
    h_p = k(s_2p, s_2p+1) + k(t_2p, t_2p+1) − k(s_2p, t_2p+1) − k(s_2p+1, t_2p), the feature
    bandwidths σ̄² the mean of the pairs' squared distances (detached); value and gradient."""
    from transferlab.losses.alignment.jan import JointMultipleKernelMMD

    g = torch.Generator().manual_seed(4)
    f_s = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    f_t = (torch.randn(6, 3, generator=g, dtype=torch.float64) + 0.7).requires_grad_(True)
    l_s, l_t = (
        torch.randn(6, 4, generator=g, dtype=torch.float64),
        torch.randn(6, 4, generator=g, dtype=torch.float64),
    )
    multipliers, sigma_g = (0.5, 1.0, 2.0), 0.92
    p_s, p_t = torch.softmax(l_s, 1), torch.softmax(l_t, 1)
    pairs = [(2 * p, 2 * p + 1) for p in range(3)]
    quads = []
    for a, b in pairs:  # (x, y) index pairs and which domain each side is from
        quads += [((f_s, p_s, a), (f_s, p_s, b)), ((f_t, p_t, a), (f_t, p_t, b))]
        quads += [((f_s, p_s, a), (f_t, p_t, b)), ((f_s, p_s, b), (f_t, p_t, a))]
    squared = [(x[0][x[2]] - y[0][y[2]]).pow(2).sum() for x, y in quads]
    bandwidth = torch.stack(squared).mean().detach()

    def k(index: int) -> torch.Tensor:
        x, y = quads[index]
        features = sum(torch.exp(-squared[index] / (2 * m * bandwidth)) for m in multipliers)
        return features * torch.exp(-(x[1][x[2]] - y[1][y[2]]).pow(2).sum() / (2 * sigma_g**2))

    expected = sum(k(4 * p) + k(4 * p + 1) - k(4 * p + 2) - k(4 * p + 3) for p in range(3)) / 3
    value = JointMultipleKernelMMD(multipliers, sigma_g, linear=True)(f_s, f_t, l_s, l_t)
    assert value.item() == pytest.approx(expected.item(), rel=1e-10)
    ours = torch.autograd.grad(value, [f_s, f_t])
    reference = torch.autograd.grad(expected, [f_s, f_t])
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_jmmd_is_the_reference_librarys_minus_its_constant_once_the_bandwidths_agree():
    """TLlib's JointMultipleKernelMaximumMeanDiscrepancy, re-derived: Gaussian kernels whose σ² is
    α·mean of all (2N)² squared distances (diagonal included), the product over the features and
    the predictions (σ = 0.92, fixed), its index matrix (1/(N(N − 1)) within a domain off the
    diagonal, −1/N² across), plus 2/(N − 1). Ours with its multipliers scaled by (2N − 1)/(2N)
    (the same bandwidths) equals it minus 2/(N − 1); with its own, it does not."""
    g = torch.Generator().manual_seed(6)
    n = 5
    f_s, f_t = (
        torch.randn(n, 3, generator=g, dtype=torch.float64),
        torch.randn(n, 3, generator=g, dtype=torch.float64),
    )
    l_s, l_t = (
        torch.randn(n, 4, generator=g, dtype=torch.float64),
        torch.randn(n, 4, generator=g, dtype=torch.float64),
    )
    alphas = [2.0**k for k in range(-3, 2)]
    z, p = torch.cat([f_s, f_t]), torch.cat([l_s.softmax(1), l_t.softmax(1)])
    d_z, d_p = torch.cdist(z, z).pow(2), torch.cdist(p, p).pow(2)
    features = sum(torch.exp(-d_z / (2 * a * d_z.mean())) for a in alphas)
    kernel = features * torch.exp(-d_p / (2 * 0.92**2))
    index = torch.zeros(2 * n, 2 * n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                index[i, j] = index[i + n, j + n] = 1 / (n * (n - 1))
            index[i, j + n] = index[i + n, j] = -1 / n**2
    reference = (kernel * index).sum() + 2 / (n - 1)
    scaled = JointMultipleKernelMMD(tuple(a * (2 * n - 1) / (2 * n) for a in alphas))(f_s, f_t, l_s, l_t)
    assert scaled.item() == pytest.approx(reference.item() - 2 / (n - 1), rel=1e-10)
    own = JointMultipleKernelMMD(tuple(alphas))(f_s, f_t, l_s, l_t)
    assert own.item() != pytest.approx(reference.item() - 2 / (n - 1), rel=1e-6)
