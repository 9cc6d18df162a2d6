"""LoRA (Hu et al., ICLR 2022) through Hugging Face's ``peft``: each target layer's frozen weight
W gains a trained low-rank update, W + (α/r)·B·A (B zero at the start, so training starts from
the source net exactly)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from transferlab.nets.base import Classifier
from transferlab.peft.base import ParameterEfficient
from transferlab.utils.errors import ConfigError

ADAPTABLE = (nn.Linear, nn.Conv2d)


def adaptable_layers(backbone: nn.Module) -> list[str]:
    """The backbone's linear and 2-d convolution layers by name: what LoRA can target."""
    return [name for name, module in backbone.named_modules() if isinstance(module, ADAPTABLE)]


class LoRA(ParameterEfficient):
    """Args:
    rank: r, the rank of B·A (B: (out, r), A: (r, in); for a convolution A is a convolution of
        the layer's kernel with r output channels and B a 1×1 one).
    alpha: α; the update is scaled by α/r.
    target_modules: the layers to adapt, by name or name suffix as peft matches them
        (``[qkv, proj]`` in a ViT, ``[conv1, conv2]`` in a ResNet's blocks); None: every linear
        and 2-d convolution layer of the backbone.
    dropout: on the update's input.
    Only the factors (and the head) train.
    """

    adds_parameters = True

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: Sequence[str] | None = None,
        dropout: float = 0.0,
    ) -> None:
        if rank < 1:
            raise ConfigError(f"method.peft.rank={rank} must be >= 1")
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.target_modules = list(target_modules) if target_modules is not None else None

    def targets(self, backbone: nn.Module) -> list[str]:
        """The names of the layers to adapt; a target that matches none is refused, listing them."""
        layers = adaptable_layers(backbone)
        if self.target_modules is None:
            return layers

        def matches(name: str, target: str) -> bool:
            return name == target or name.endswith(f".{target}")

        for target in self.target_modules:
            if not any(matches(name, target) for name in layers):
                shown = ", ".join(layers[:8]) + (f", … ({len(layers)} in all)" if len(layers) > 8 else "")
                raise ConfigError(
                    f"method.peft.target_modules: the backbone has no linear or convolution layer "
                    f"{target!r}; its layers are {shown}"
                )
        return [name for name in layers if any(matches(name, t) for t in self.target_modules)]

    def apply(self, net: Classifier) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        # the exact names, as one pattern (peft matches a list by suffix: "0" would be every "*.0")
        pattern = "|".join(re.escape(name) for name in self.targets(net.backbone))
        config = LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=f"^(?:{pattern})$"
        )
        inject_adapter_in_model(config, net.backbone)
        for name, param in net.backbone.named_parameters():
            param.requires_grad_("lora_" in name)
