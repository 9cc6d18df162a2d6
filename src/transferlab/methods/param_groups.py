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


def layer_depths(backbone: nn.Module) -> dict[str, int]:
    """Each backbone parameter's depth, 0 at the input: a timm model's own grouping
    (``group_matcher``, the grouping timm's layer decay uses: the stem, each block, the final norm),
    else the order of the backbone's top-level layers."""
    if hasattr(backbone, "group_matcher"):
        from timm.models import group_parameters

        groups = group_parameters(backbone, backbone.group_matcher(coarse=False))
        return {name: int(depth) for depth, names in groups.items() for name in names}
    order = {child: i for i, (child, _) in enumerate(backbone.named_children())}
    return {name: order.get(name.split(".")[0], 0) for name, _ in backbone.named_parameters()}


def layer_decay_groups(
    backbone: nn.Module, decay: float, lr_scale: float = 1.0, weight_decay: bool = True
) -> list[dict[str, Any]]:
    """``decay_groups`` per depth, the learning rate scaled by decay^(L − d) for a parameter at
    depth d of L (the head, after the last, keeps the full rate): layer-wise learning-rate decay
    (Clark et al., ELECTRA; BEiT's and timm's fine-tuning recipes), the layers near the input
    moving least."""
    depths = layer_depths(backbone)
    top = max(depths.values(), default=0) + 1
    by_depth: dict[int, list[tuple[str, nn.Parameter]]] = {}
    for name, param in backbone.named_parameters():
        by_depth.setdefault(depths.get(name, 0), []).append((name, param))
    return [
        group
        for depth, named in sorted(by_depth.items())
        for group in decay_groups(
            f"backbone.{depth}", named, lr_scale=lr_scale * decay ** (top - depth), weight_decay=weight_decay
        )
    ]
