"""Domain-adversarial pieces (Ganin & Lempitsky, 2015): gradient reversal and its schedule."""

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
    """R_λ(x) = x forward, dR/dx = −λ·I backward. Shapes: any; the output has the input's shape.

    Example::

        >>> x = torch.ones(3, requires_grad=True)
        >>> GradientReversal(0.5)(x).sum().backward()  # x.grad == [-0.5, -0.5, -0.5]
    """

    def __init__(self, coefficient: float = 1.0) -> None:
        super().__init__()
        self.coefficient = coefficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coefficient)


def grl_coefficient(progress: float, gamma: float = 10.0) -> float:
    """λ(p) = 2 / (1 + exp(−γ·p)) − 1: 0 at p = 0, rising to ≈ 1 at p = 1 (γ = 10)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def annealed_lr_factor(progress: float, decay_rate: float = 10.0, decay_power: float = 0.75) -> float:
    """μ_p / μ_0 = 1 / (1 + a·p)^b, the learning-rate annealing of Ganin & Lempitsky (a = 10, b = 0.75)."""
    return 1.0 / (1.0 + decay_rate * progress) ** decay_power
