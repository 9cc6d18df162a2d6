"""Domain-adversarial pieces (Ganin & Lempitsky, 2015): gradient reversal R_c and the warm-up of
its coefficient c. (The learning-rate annealing of the same paper is in ``methods/schedulers.py``.)"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad_output, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by −coefficient in the backward pass."""
    return _ReverseGradient.apply(x, coefficient)


class GradientReversal(nn.Module):
    """R_c(x) = x forward, dR/dx = −c·I backward. Shapes: any; the output has the input's shape.

    Example::

        >>> x = torch.ones(3, requires_grad=True)
        >>> GradientReversal(0.5)(x).sum().backward()  # x.grad == [-0.5, -0.5, -0.5]
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coefficient)


def reversal_warmup(progress: float, gamma: float = 10.0) -> float:
    """c(p) = 2 / (1 + exp(−γ·p)) − 1: 0 at p = 0, rising to ≈ 1 at p = 1 (γ = 10)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0
