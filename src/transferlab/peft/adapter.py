"""Bottleneck adapters (Houlsby et al., ICML 2019; Rebuffi et al.'s residual adapters for
convolutional nets, NeurIPS 2017): after each named layer, h ← h + W_up·ReLU(W_down·h), a
bottleneck of C/reduction channels (1×1 convolutions on feature maps, linear layers on vectors),
W_up zero at the start so training starts from the source net exactly. Only the adapters (and
the head) train."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from transferlab.nets.base import Classifier
from transferlab.peft.base import ParameterEfficient
from transferlab.utils.errors import ConfigError


def output_width(module: nn.Module) -> int:
    """The channels (or features) ``module`` puts out: those of its last layer that says so."""
    for layer in reversed(list(module.modules())):
        for attr in ("out_channels", "num_features", "out_features", "normalized_shape"):
            width = getattr(layer, attr, None)
            if width is not None:
                return int(width[-1] if isinstance(width, (tuple, list)) else width)
    raise ConfigError(f"method.peft.layers: cannot tell how many channels {type(module).__name__} puts out")


class Bottleneck(nn.Module):
    """x ↦ W_up·ReLU(W_down·x) over the channels: of (N, C, H, W) maps (a 1×1 convolution), of
    (N, C) or (N, T, C) vectors; W_up starts at zero."""

    def __init__(self, width: int, reduction: int) -> None:
        super().__init__()
        hidden = max(width // reduction, 1)
        self.down, self.up = nn.Linear(width, hidden), nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.movedim(1, -1) if x.dim() == 4 else x  # maps are channels first
        out = self.up(torch.relu(self.down(channels_last)))
        return out.movedim(-1, 1) if x.dim() == 4 else out


class BottleneckAdapter(ParameterEfficient):
    """Args:
    layers: the backbone layers to follow with an adapter, by module name (a CIFAR ResNet's
        stages ``['3', '4', '5']``, a timm ResNet's ``[layer1, …, layer4]``).
    reduction: the bottleneck's width is the layer's channels / reduction.
    """

    adds_parameters = True

    def __init__(self, layers: Sequence[str] = ("",), reduction: int = 4) -> None:
        if reduction < 1:
            raise ConfigError(f"method.peft.reduction={reduction} must be >= 1")
        self.layers, self.reduction = list(layers), reduction

    def apply(self, net: Classifier) -> None:
        backbone = net.backbone
        backbone.requires_grad_(False)
        adapters = nn.ModuleDict()
        for layer in self.layers:
            try:
                target = backbone.get_submodule(layer)
            except AttributeError:
                names = [name for name, _ in backbone.named_children()]
                raise ConfigError(
                    f"method.peft.layers: the backbone has no layer {layer!r}; its top-level layers "
                    f"are {names} ('' is its output)"
                ) from None
            adapter = Bottleneck(output_width(target), self.reduction)
            adapters[layer.replace(".", "_") or "output"] = adapter
            target.register_forward_hook(_add(adapter))
        # held by the net beside the backbone (a Sequential backbone would run them as layers), so
        # the backbone's own keys stay the source's
        net.add_module("peft_adapters", adapters)


def _add(adapter: Bottleneck) -> Any:
    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + adapter(output)

    return hook
