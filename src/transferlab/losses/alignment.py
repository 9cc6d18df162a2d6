"""Alignment losses of domain adaptation: each measures how far apart the source and target
feature distributions are, and training lowers it. Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D).

Conventions shared by the adversarial ones: the **source domain is labelled 1**, the target 0,
and the loss is ½·(mean over the source samples + mean over the target samples), i.e. half of
Ganin et al.'s L_d = (1/n)·Σ_source + (1/n')·Σ_target, for any two batch sizes (a plain mean
over the concatenated batch would weight the domains by their sample counts instead).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.domain import reverse_gradient


def balanced_domain_bce(
    source_logits: torch.Tensor,
    target_logits: torch.Tensor,
    source_sample_weights: torch.Tensor | None = None,
    target_sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """½·(BCE(d_s, 1) averaged over the source + BCE(d_t, 0) averaged over the target).

    ``*_logits``: (N,) discriminator logits. ``*_sample_weights``: optional (N,) non-negative
    per-sample weights; each domain's average is then Σ w_i·BCE_i / Σ w_i. Returns a 0-d tensor.
    """

    def average(logits: torch.Tensor, label: float, weights: torch.Tensor | None) -> torch.Tensor:
        losses = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label), reduction="none")
        if weights is None:
            return losses.mean()
        return (weights * losses).sum() / weights.sum()

    return 0.5 * (
        average(source_logits, 1.0, source_sample_weights)
        + average(target_logits, 0.0, target_sample_weights)
    )


def domain_accuracy(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's accuracy, balanced as the loss is: ½·(source acc + target acc)."""
    return 0.5 * ((source_logits > 0).float().mean() + (target_logits <= 0).float().mean())


class DomainAdversarialLoss(nn.Module):
    """DANN's domain loss (Ganin & Lempitsky, 2015) through a gradient-reversal layer R_c:

        L_d = ½·[ (1/N_s)·Σ_i BCE(d(R_c(f_s,i)), 1) + (1/N_t)·Σ_j BCE(d(R_c(f_t,j)), 0) ]

    The discriminator d descends L_d (it learns to tell the domains apart); R_c is the identity
    forward and multiplies the gradient by −c backward, so the features ascend c·L_d (they learn
    to make the domains indistinguishable). ``coefficient`` is c, passed at each call so a
    schedule can drive it.

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D); returns (the 0-d loss, the 0-d balanced domain
    accuracy, detached). Example::

        >>> loss = DomainAdversarialLoss(nn.Linear(16, 1))
        >>> value, accuracy = loss(torch.randn(8, 16), torch.randn(8, 16), coefficient=1.0)
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(
        self, f_s: torch.Tensor, f_t: torch.Tensor, coefficient: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.discriminator(reverse_gradient(torch.cat([f_s, f_t]), coefficient)).squeeze(1)
        source, target = logits[: f_s.shape[0]], logits[f_s.shape[0] :]
        return balanced_domain_bce(source, target), domain_accuracy(source, target).detach()


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """H(g) = −Σ_k g_k·log g_k per row: (N, K) -> (N,)."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1)


class MultilinearMap(nn.Module):
    """CDAN's conditioning T(f, g) of features f (N, D) by class probabilities g (N, K).

    Full: T = g ⊗ f, the outer product flattened to (N, K·D). Randomized (Long et al., 2018,
    for large K·D): T = (R_f·f) ⊙ (R_g·g) / √d with fixed Gaussian R_f (d, D), R_g (d, K), so
    (N, d); E[⟨T(a), T(b)⟩] = ⟨a_f, b_f⟩·⟨a_g, b_g⟩, the inner product of the full map.
    """

    def __init__(self, feature_dim: int, num_classes: int, randomized_dim: int | None = None) -> None:
        super().__init__()
        self.randomized_dim = randomized_dim
        self.output_dim = feature_dim * num_classes if randomized_dim is None else randomized_dim
        if randomized_dim is not None:  # buffers: fixed, checkpointed, follow the device
            self.register_buffer("random_f", torch.randn(randomized_dim, feature_dim))
            self.register_buffer("random_g", torch.randn(randomized_dim, num_classes))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.randomized_dim is None:
            return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)
        return (f @ self.random_f.T) * (g @ self.random_g.T) / math.sqrt(self.randomized_dim)


class ConditionalDomainAdversarialLoss(nn.Module):
    """CDAN (Long et al., 2018): the domain loss on features conditioned by predictions,

        L_d = ½·[ Σ_i w_i·BCE(d(R_c(T(f_i, g_i))), 1) / Σ_i w_i  over the source
                + Σ_j w_j·BCE(d(R_c(T(f_j, g_j))), 0) / Σ_j w_j  over the target ]

    with g = softmax(logits) (detached inside T: the classifier is trained by its own loss, as in
    the authors' code), T the multilinear map (``MultilinearMap``), and w = 1 (CDAN) or, with
    ``entropy_conditioning`` (CDAN+E), w = 1 + exp(−H(g)): confident, easy-to-transfer samples
    weigh more. Each domain's weights are normalised within the domain, as the authors' code does
    (thuml/CDAN ``pytorch/loss.py``: the source's and the target's weights each over their own sum;
    the reference library, TLlib, normalises over the joint batch); with w = 1 this is DANN's loss
    on T(f, g).

    The weights' gradient: by default none (w is computed from the detached g, as TLlib does). With
    ``reverse_entropy_gradient`` (the authors' CDAN+E), H(g) is computed from the live g behind a
    gradient reversal of the same coefficient c, so the classifier receives −c·∂L_d/∂H through the
    weights (the normalisers Σ w stay detached, as theirs).

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D), ``logits_s`` (N_s, K), ``logits_t`` (N_t, K);
    returns (0-d loss, 0-d domain accuracy). Example::

        >>> loss = ConditionalDomainAdversarialLoss(nn.Linear(16 * 3, 1), MultilinearMap(16, 3))
        >>> f_s, f_t, logits_s, logits_t = *torch.randn(16, 16).split(8), *torch.randn(16, 3).split(8)
        >>> value, accuracy = loss(f_s, f_t, logits_s, logits_t)
    """

    def __init__(
        self,
        discriminator: nn.Module,
        multilinear_map: MultilinearMap,
        entropy_conditioning: bool = False,
        reverse_entropy_gradient: bool = False,
    ) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.multilinear_map = multilinear_map
        self.entropy_conditioning = entropy_conditioning
        self.reverse_entropy_gradient = reverse_entropy_gradient

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        live = F.softmax(torch.cat([logits_s, logits_t]), dim=1)
        g = live.detach()
        h = self.multilinear_map(torch.cat([f_s, f_t]), g)
        logits = self.discriminator(reverse_gradient(h, coefficient)).squeeze(1)
        n = f_s.shape[0]
        source, target = logits[:n], logits[n:]
        accuracy = domain_accuracy(source, target).detach()
        if not self.entropy_conditioning:
            return balanced_domain_bce(source, target), accuracy
        if not self.reverse_entropy_gradient:
            weights = 1.0 + torch.exp(-entropy(g))
            return balanced_domain_bce(source, target, weights[:n], weights[n:]), accuracy
        weights = 1.0 + torch.exp(-reverse_gradient(entropy(live), coefficient))
        w_s, w_t = weights[:n], weights[n:]
        bce_s = F.binary_cross_entropy_with_logits(source, torch.ones_like(source), reduction="none")
        bce_t = F.binary_cross_entropy_with_logits(target, torch.zeros_like(target), reduction="none")
        loss = 0.5 * ((w_s * bce_s).sum() / w_s.sum().detach() + (w_t * bce_t).sum() / w_t.sum().detach())
        return loss, accuracy


class MultipleKernelMMD(nn.Module):
    """MK-MMD (DAN, Long et al., 2015): the squared maximum mean discrepancy between the source
    and target features under k = Σ_u k_u, Gaussian kernels k_u(a, b) = exp(−‖a − b‖² / (2σ_u²)).

    Bandwidths: σ_u² = m_u·σ̄², σ̄² the mean squared distance between the batch's samples
    (detached), m_u in ``kernel_multipliers`` (2⁻³..2¹ by default, as in the reference library).
    The kernels have equal weights β_u = 1 (DAN optimises β; the reference library does not).

    Quadratic (unbiased) estimate, O((N_s + N_t)²):

        MMD² = Σ_{i≠i'} k(s_i, s_i') / (N_s(N_s−1)) + Σ_{j≠j'} k(t_j, t_j') / (N_t(N_t−1))
               − 2·Σ_{i,j} k(s_i, t_j) / (N_s·N_t)

    ``linear=True``: Gretton et al.'s linear-time estimate over n = ⌊min(N_s, N_t)/2⌋ disjoint
    pairs, MMD²_l = (1/n)·Σ_p [k(s_2p, s_2p+1) + k(t_2p, t_2p+1) − k(s_2p, t_2p+1) −
    k(s_2p+1, t_2p)], with σ̄² from the same pairs. Both are unbiased, so either can be
    slightly negative when the distributions agree.

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D), N ≥ 2 each; returns a 0-d tensor. Example::

        >>> MultipleKernelMMD()(torch.randn(8, 16), torch.randn(8, 16) + 1.0)  # > 0
    """

    def __init__(
        self, kernel_multipliers: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0), linear: bool = False
    ) -> None:
        super().__init__()
        if not kernel_multipliers or min(kernel_multipliers) <= 0:
            raise ValueError(f"kernel_multipliers={kernel_multipliers} must be positive numbers")
        self.kernel_multipliers = tuple(float(m) for m in kernel_multipliers)
        self.linear = linear

    def kernel(self, squared_distances: torch.Tensor, mean_squared_distance: torch.Tensor) -> torch.Tensor:
        """Σ_u exp(−d² / (2·m_u·σ̄²)), elementwise on a tensor of squared distances."""
        scale = mean_squared_distance.detach().clamp_min(1e-12)
        return sum(torch.exp(-squared_distances / (2.0 * m * scale)) for m in self.kernel_multipliers)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        if self.linear:
            return self._linear(f_s, f_t)
        n_s, n_t = f_s.shape[0], f_t.shape[0]
        if min(n_s, n_t) < 2:
            raise ValueError(f"MMD needs at least two samples per domain (got {n_s} and {n_t})")
        z = torch.cat([f_s, f_t])
        distances = torch.cdist(z, z).pow(2)
        k = self.kernel(distances, distances.sum() / (z.shape[0] * (z.shape[0] - 1)))
        k_ss, k_tt, k_st = k[:n_s, :n_s], k[n_s:, n_s:], k[:n_s, n_s:]
        within_s = (k_ss.sum() - k_ss.diagonal().sum()) / (n_s * (n_s - 1))
        within_t = (k_tt.sum() - k_tt.diagonal().sum()) / (n_t * (n_t - 1))
        return within_s + within_t - 2.0 * k_st.mean()

    def _linear(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        pairs = min(f_s.shape[0], f_t.shape[0]) // 2
        if pairs < 1:
            raise ValueError("the linear-time MMD needs at least two samples per domain")
        s1, s2 = f_s[0 : 2 * pairs : 2], f_s[1 : 2 * pairs : 2]
        t1, t2 = f_t[0 : 2 * pairs : 2], f_t[1 : 2 * pairs : 2]
        squared = torch.stack(
            [
                (s1 - s2).pow(2).sum(1),
                (t1 - t2).pow(2).sum(1),
                (s1 - t2).pow(2).sum(1),
                (s2 - t1).pow(2).sum(1),
            ]
        )
        k = self.kernel(squared, squared.mean())
        return (k[0] + k[1] - k[2] - k[3]).mean()


class CORALLoss(nn.Module):
    """Deep CORAL (Sun & Saenko, 2016): L = ‖C_s − C_t‖²_F / (4·D²), with C the (D, D) covariance
    of a domain's features, C = (fᵀf − (1ᵀf)ᵀ(1ᵀf)/N) / (N − 1).

    (The reference library's variant adds the squared difference of the means and averages
    instead of dividing by 4·D²; this is the paper's.) Shapes: ``f_s`` (N_s, D), ``f_t``
    (N_t, D), N ≥ 2 each; returns a 0-d tensor, 0 when the covariances agree. Example::

        >>> CORALLoss()(torch.randn(8, 4), 3.0 * torch.randn(8, 4))  # > 0
    """

    @staticmethod
    def covariance(f: torch.Tensor) -> torch.Tensor:
        if f.shape[0] < 2:
            raise ValueError(f"a covariance needs at least two samples (got {f.shape[0]})")
        centred = f - f.mean(dim=0, keepdim=True)
        return centred.T @ centred / (f.shape[0] - 1)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        d = f_s.shape[1]
        return (self.covariance(f_s) - self.covariance(f_t)).pow(2).sum() / (4.0 * d * d)


class MinimumClassConfusion(nn.Module):
    """MCC (Jin et al., ECCV 2020): the confusion between classes in the target's predictions.

    With p = softmax(logits_t / T) (N, K) and per-sample weights w_n = N·(1 + exp(−H(p_n))) /
    Σ_m (1 + exp(−H(p_m))) (detached: confident samples weigh more), the class confusion matrix is
    C = pᵀ·diag(w)·p (K, K), row-normalised C̃_jk = C_jk / Σ_k' C_jk', and

        L_MCC = (1/K)·Σ_j Σ_{k≠j} C̃_jk.

    Shapes: ``logits_t`` (N, K); returns a 0-d tensor, 0 when every prediction is one-hot.
    (The reference library divides C by its row sums with broadcasting over columns; C is
    symmetric, so the sum of the off-diagonal entries and the loss are the same.) Example::

        >>> MinimumClassConfusion(temperature=2.5)(torch.randn(8, 10))
    """

    def __init__(self, temperature: float = 2.5) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 (MCC's is 2.5)")
        self.temperature = temperature

    def forward(self, logits_t: torch.Tensor) -> torch.Tensor:
        n, k = logits_t.shape
        p = F.softmax(logits_t / self.temperature, dim=1)
        weights = 1.0 + torch.exp(-entropy(p).detach())
        weights = (n * weights / weights.sum()).unsqueeze(1)
        confusion = (p * weights).T @ p
        confusion = confusion / confusion.sum(dim=1, keepdim=True)
        return (confusion.sum() - confusion.trace()) / k


def shifted_log(x: torch.Tensor, offset: float = 1e-6) -> torch.Tensor:
    """log(min(x + offset, 1)): a log that stays finite at x = 0."""
    return torch.log(torch.clamp(x + offset, max=1.0))


class MarginDisparityDiscrepancy(nn.Module):
    """MDD (Zhang et al., ICML 2019), for classification, with an adversarial head f':

        D_γ = γ·mean_s log softmax(f'(x_s))[h(x_s)] + mean_t log(1 − softmax(f'(x_t))[h(x_t)])

    h(x) = argmax of the main head's logits (no gradient through it), f' an MLP on the features
    behind a gradient-reversal layer R_c. The method minimises −D_γ: f' ascends D_γ (it agrees with
    h on the source, disagrees on the target), the features descend c·D_γ. γ is the margin
    (``margin``, 4 in the paper and the reference library for most tasks).

    Shapes: ``f_s`` (N_s, D), ``f_t`` (N_t, D), ``logits_s`` (N_s, K), ``logits_t`` (N_t, K); returns
    (−D_γ as a 0-d loss, the adversarial head's agreement with h on the target, detached).
    """

    def __init__(self, adversarial_head: nn.Module, margin: float = 4.0) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin={margin} must be > 0 (MDD's γ, 4 in the paper)")
        self.adversarial_head = adversarial_head
        self.margin = margin

    def forward(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adversarial = self.adversarial_head(reverse_gradient(torch.cat([f_s, f_t]), coefficient))
        adv_s, adv_t = adversarial[: f_s.shape[0]], adversarial[f_s.shape[0] :]
        h_s, h_t = logits_s.argmax(1).detach(), logits_t.argmax(1).detach()
        source = -F.cross_entropy(adv_s, h_s)  # mean log softmax(f'(x_s))[h]
        target = F.nll_loss(shifted_log(1.0 - F.softmax(adv_t, dim=1)), h_t)  # −mean log(1 − p[h])
        disparity = self.margin * source - target
        agreement = (adv_t.argmax(1) == h_t).float().mean().detach()
        return -disparity, agreement


class JointMultipleKernelMMD(nn.Module):
    """JMMD (JAN, Long et al., ICML 2017): the MMD of the joint distribution of the features and
    the predictions, under the product of a kernel on each:

        k((f, g), (f', g')) = [Σ_u exp(−‖f − f'‖² / (2·m_u·σ̄²))] · exp(−‖g − g'‖² / (2·σ_g²))

    with g = softmax(logits), the feature bandwidths m_u·σ̄² as DAN's (``MultipleKernelMMD``) and
    σ_g = 0.92 (the reference library's). The estimate is the unbiased quadratic one of
    ``MultipleKernelMMD`` on the joint kernel matrix (the reference library's equals it plus the
    constant 2/(N − 1), which no gradient sees), or the linear-time one with ``linear``.

    Shapes: ``f_s`` (N, D), ``f_t`` (N, D), ``logits_s`` (N, K), ``logits_t`` (N, K), N ≥ 2;
    returns a 0-d tensor.
    """

    def __init__(
        self,
        kernel_multipliers: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0),
        prediction_sigma: float = 0.92,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.features = MultipleKernelMMD(kernel_multipliers, linear=linear)
        self.prediction_sigma = prediction_sigma
        self.linear = linear

    def joint_kernel(
        self, squared_f: torch.Tensor, mean_f: torch.Tensor, squared_g: torch.Tensor
    ) -> torch.Tensor:
        return self.features.kernel(squared_f, mean_f) * torch.exp(
            -squared_g / (2 * self.prediction_sigma**2)
        )

    def forward(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        g_s, g_t = F.softmax(logits_s, dim=1), F.softmax(logits_t, dim=1)
        if self.linear:
            pairs = min(f_s.shape[0], f_t.shape[0]) // 2
            if pairs < 1:
                raise ValueError("the linear-time JMMD needs at least two samples per domain")

            def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return x[0 : 2 * pairs : 2], x[1 : 2 * pairs : 2]

            (s1, s2), (t1, t2) = split(f_s), split(f_t)
            (gs1, gs2), (gt1, gt2) = split(g_s), split(g_t)
            squared_f = torch.stack(
                [
                    (s1 - s2).pow(2).sum(1),
                    (t1 - t2).pow(2).sum(1),
                    (s1 - t2).pow(2).sum(1),
                    (s2 - t1).pow(2).sum(1),
                ]
            )
            squared_g = torch.stack(
                [
                    (gs1 - gs2).pow(2).sum(1),
                    (gt1 - gt2).pow(2).sum(1),
                    (gs1 - gt2).pow(2).sum(1),
                    (gs2 - gt1).pow(2).sum(1),
                ]
            )
            k = self.joint_kernel(squared_f, squared_f.mean(), squared_g)
            return (k[0] + k[1] - k[2] - k[3]).mean()
        n_s, n_t = f_s.shape[0], f_t.shape[0]
        if min(n_s, n_t) < 2:
            raise ValueError(f"JMMD needs at least two samples per domain (got {n_s} and {n_t})")
        z, g = torch.cat([f_s, f_t]), torch.cat([g_s, g_t])
        squared_f = torch.cdist(z, z).pow(2)
        k = self.joint_kernel(
            squared_f, squared_f.sum() / (z.shape[0] * (z.shape[0] - 1)), torch.cdist(g, g).pow(2)
        )
        k_ss, k_tt, k_st = k[:n_s, :n_s], k[n_s:, n_s:], k[:n_s, n_s:]
        within_s = (k_ss.sum() - k_ss.diagonal().sum()) / (n_s * (n_s - 1))
        within_t = (k_tt.sum() - k_tt.diagonal().sum()) / (n_t * (n_t - 1))
        return within_s + within_t - 2.0 * k_st.mean()
