"""DELTA: the distance between the fine-tuned and the source feature maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.regularizers.base import Regularizer, RegularizerInputs
from transferlab.losses.slot import FEATURE_MAPS, SetupContext
from transferlab.utils.log import log


class FeatureMapDistance(Regularizer):
    """DELTA (Li et al., 2019), behavioural regularisation:
    R = Σ_j ½‖FM_j(w, x) − FM_j(w_s, x)‖², over the layers j in ``layers``, summed over the batch.

    FM_j(w_s, x) comes from the frozen source backbone on the same batch (no gradient). With
    ``attention``, each channel c of layer j is weighted as in DELTA's attention variant:
    R = Σ_j ½ Σ_{n,c} C_j·W_j[c]·‖FM_j[n, c] − FM_j^s[n, c]‖² / (H_j·W_j), where W_j sums to 1 over
    the C_j channels (so C_j·W_j averages 1); ``setup`` measures W_j once, before training, from how
    much the source's loss rises when the channel is removed (``channel_attention``); without it,
    every W_j[c] = 1/C_j and the term is the plain distance divided by the map's area.

    ``layers``: names of modules inside the backbone (``"3"`` in a Sequential, ``"layer2"`` in a
    ResNet); ``[""]`` (the default) is the backbone's output, the features (N, D).
    ``attention_images``: how many training images the attention is measured on.
    Shapes: maps (N, C, H, W) or (N, D); returns a 0-d tensor.
    """

    needs = frozenset({FEATURE_MAPS})

    def __init__(
        self, layers: Sequence[str] = ("",), attention: bool = False, attention_images: int = 256
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError("DELTA: layers must name at least one backbone layer ('' is its output)")
        if attention_images < 1:
            raise ValueError(f"DELTA: attention_images={attention_images} must be >= 1")
        self.layers = tuple(str(layer) for layer in layers)
        self.attention = attention
        self.attention_images = attention_images
        self.channel_weights: dict[str, torch.Tensor] = {}  # layer -> W_j (C_j,), set by setup()

    def setup(self, context: SetupContext) -> None:
        if not (self.attention and context.stage == "fit" and context.reference is not None):
            return
        weights = self.channel_attention(context) if context.is_global_zero else None
        self.channel_weights = context.broadcast(weights)

    @torch.no_grad()
    def channel_attention(self, context: SetupContext) -> dict[str, torch.Tensor]:
        """DELTA's channel attention W_j: how much the source net's loss on target images rises
        when channel c of layer j is zeroed, standardised over the layer's channels and passed
        through softmax(·/5). The loss is that of a linear classifier fitted on the frozen source
        features (Adam, 200 full-batch steps). The images are drawn with a fixed seed, so a resumed
        run measures the same attention, and the random generators are left as they were."""
        devices = [context.device] if context.device.type == "cuda" else []  # GPU augmentation draws there
        with torch.random.fork_rng(devices=devices):  # the sample and nn.Linear's init both draw
            torch.manual_seed(0)
            return self._channel_attention(context)

    def _channel_attention(self, context: SetupContext) -> dict[str, torch.Tensor]:
        x, y = context.training_sample(self.attention_images)
        source = context.reference.to(context.device)
        x, y = x.to(context.device), y.to(context.device)
        features = source(x).flatten(1)
        head = nn.Linear(features.shape[1], context.num_classes).to(context.device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
        with torch.enable_grad():
            for _ in range(200):
                optimizer.zero_grad()
                F.cross_entropy(head(features), y).backward()
                optimizer.step()
        base = F.cross_entropy(head(features), y)
        backbone = getattr(source, "module", source)  # hooks go on the wrapped net's layers
        weights: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            module = backbone.get_submodule(layer)
            rises = []
            for channel in range(_channels(source, module, x[:1])):

                def drop(
                    _module: nn.Module, _inputs: Any, output: torch.Tensor, c: int = channel
                ) -> torch.Tensor:
                    output = output.clone()
                    output[:, c] = 0
                    return output

                handle = module.register_forward_hook(drop)
                try:
                    rises.append(F.cross_entropy(head(source(x).flatten(1)), y) - base)
                finally:
                    handle.remove()
            rise = torch.stack(rises)
            standard = (rise - rise.mean()) / rise.std().clamp_min(1e-12)
            weights[layer] = torch.softmax(standard / 5, dim=0)
        log.info("DELTA channel attention measured on %d images for layers %s", len(x), list(self.layers))
        return weights

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        total = torch.zeros((), device=next(iter(inputs.feature_maps.values())).device)
        for layer in self.layers:
            target, source = inputs.feature_maps[layer], inputs.source_feature_maps[layer].detach()
            if not self.attention:
                total = total + 0.5 * (target - source).pow(2).sum()
                continue
            n, c = target.shape[:2]
            per_channel = (target - source).reshape(n, c, -1).pow(2)  # (N, C, H·W)
            area = per_channel.shape[-1]
            weights = self.channel_weights.get(layer)
            if weights is None:
                weights = torch.full((c,), 1.0 / c, device=target.device)
            total = total + 0.5 * (c * weights.to(target.device) * per_channel.sum(-1) / area).sum()
        return total


def _channels(net: nn.Module, layer: nn.Module, x: torch.Tensor) -> int:
    """The number of channels ``layer`` outputs when ``net`` runs on ``x``."""
    seen: list[int] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: seen.append(output.shape[1]))
    try:
        net(x)
    finally:
        handle.remove()
    return seen[0]
