"""Optimiser parameter groups: what decays and at which learning-rate scale (every method's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn


def decay_groups(
    name: str,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    lr_scale: float = 1.0,
    weight_decay: bool = True,
) -> list[dict[str, Any]]:
    """Two optimiser groups: weights (with the optimiser's weight decay unless ``weight_decay``
    is False) and biases + normalisation parameters (never decayed, the usual ResNet practice).
    """
    weights, others = [], []
    for _, param in named_parameters:
        if param.requires_grad:
            (weights if param.ndim > 1 else others).append(param)
    weights_group: dict[str, Any] = {"params": weights, "name": name, "lr_scale": lr_scale}
    if not weight_decay:
        weights_group["weight_decay"] = 0.0
    others_group = {
        "params": others,
        "name": f"{name}_norm_bias",
        "weight_decay": 0.0,
        "lr_scale": lr_scale,
    }
    return [group for group in (weights_group, others_group) if group["params"]]
