"""JAN's joint multiple-kernel maximum mean discrepancy."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.alignment.dan import MultipleKernelMMD


class JointMultipleKernelMMD(nn.Module):
    """JMMD (JAN, Long et al., ICML 2017): the MMD of the joint distribution of the features and
    the predictions, under the product of a kernel on each:

        k((f, g), (f', g')) = [Σ_u exp(−‖f − f'‖² / (2·m_u·σ̄²))] · exp(−‖g − g'‖² / (2·σ_g²))

    with g = softmax(logits), the feature bandwidths m_u·σ̄² as DAN's (``MultipleKernelMMD``) and
    σ_g = 0.92 (the reference library's). The estimate is the unbiased quadratic one of
    ``MultipleKernelMMD`` on the joint kernel matrix, or the linear-time one with ``linear``.
    The reference library's value differs in two ways: it adds the constant 2/(N − 1) (no gradient
    sees it), and its σ̄² averages the squared distances over all (2N)² pairs, the zero diagonal
    included, where this σ̄² averages the 2N(2N − 1) others: its bandwidths are these times
    (2N − 1)/(2N). With the bandwidths made equal, the two agree up to that constant.

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
