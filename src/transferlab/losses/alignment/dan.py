"""DAN's multiple-kernel maximum mean discrepancy."""

from __future__ import annotations

import torch
from torch import nn


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
