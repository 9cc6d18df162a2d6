"""Fine-tuning regularizers R: min L_t(θ_t) + λ·R. λ is applied by the method.

Each regularizer is a slot member (``losses/slot.py``): it sees a ``RegularizerInputs`` and
declares in ``needs`` which of its optional parts it reads, so the method computes only those:

- ``SOURCE_WEIGHTS``: θ_s, the source backbone's parameters (L2-SP);
- ``FEATURES``: the batch's features from the fine-tuned net, (N, D) (BSS);
- ``FEATURE_MAPS``: the feature maps at the backbone layers named in ``layers`` of the fine-tuned
  net and of the frozen source backbone, on the same batch (DELTA).

The backbone and head parameters are always there. α (``backbone_weight``) and β (``head_weight``)
are Li et al.'s names for the weights of the parameter penalties. A regularizer that must measure
something before training (DELTA's channel attention) does it in ``setup``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.slot import FEATURE_MAPS, FEATURES, SOURCE_WEIGHTS, SetupContext, SlotMember
from transferlab.utils.log import log

Named = Iterable[tuple[str, torch.Tensor]]


@dataclass
class RegularizerInputs:
    """What a regularizer may read. ``feature_maps`` and ``source_feature_maps`` map a layer name
    of ``layers`` (``""``: the backbone's output) to its (N, C, H, W) or (N, D) output."""

    backbone: list[tuple[str, torch.Tensor]]
    head: list[tuple[str, torch.Tensor]]
    source_weights: dict[str, torch.Tensor] = field(default_factory=dict)
    features: torch.Tensor | None = None
    feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    source_feature_maps: dict[str, torch.Tensor] = field(default_factory=dict)


def _squared_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    terms = [t.pow(2).sum() for t in tensors]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class Regularizer(SlotMember):
    """Base of every fine-tuning regularizer.

    ``needs``: the optional inputs it reads (``SOURCE_WEIGHTS``, ``FEATURES``, ``FEATURE_MAPS``);
    ``layers``: the backbone layers whose feature maps it reads (with ``FEATURE_MAPS``);
    ``regularises_backbone`` / ``regularises_head``: which parameters already carry a penalty, so
    the method switches the optimiser's weight decay off for them.
    """

    regularises_backbone = False
    regularises_head = False

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        raise NotImplementedError


class ParameterRegularizer(Regularizer):
    """A penalty on parameters: ``backbone_weight`` (α) weighs the backbone term, ``head_weight``
    (β) the head term β/2·‖w_head‖²."""

    def __init__(self, backbone_weight: float = 1.0, head_weight: float = 0.0) -> None:
        super().__init__()
        if backbone_weight < 0 or head_weight < 0:
            raise ValueError(
                f"regularizer weights must be >= 0 "
                f"(backbone_weight={backbone_weight}, head_weight={head_weight})"
            )
        self.backbone_weight = backbone_weight
        self.head_weight = head_weight

    @property
    def regularises_backbone(self) -> bool:  # type: ignore[override]
        return self.backbone_weight > 0

    @property
    def regularises_head(self) -> bool:  # type: ignore[override]
        return self.head_weight > 0

    def head_penalty(self, head: Named) -> torch.Tensor:
        """β/2·‖w_head‖²."""
        return 0.5 * self.head_weight * _squared_norm(p for _, p in head)


class NoRegularizer(Regularizer):
    """R = 0: plain fine-tuning (the same as λ = 0)."""

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        return torch.zeros(())


class L2(ParameterRegularizer):
    """R = α/2·‖w_backbone‖² + β/2·‖w_head‖²: explicit weight decay, a pull toward zero.

    Shapes: any parameter shapes; returns a 0-d tensor. Example::

        >>> net = torch.nn.Linear(2, 2)
        >>> L2(backbone_weight=1.0)(RegularizerInputs(list(net.named_parameters()), []))  # ½·Σ w²
    """

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        return 0.5 * self.backbone_weight * _squared_norm(p for _, p in inputs.backbone) + self.head_penalty(
            inputs.head
        )


class L2SP(ParameterRegularizer):
    """L2-SP (Li, Grandvalet & Davoine, 2018): R = α/2·‖w_backbone − w_s‖² + β/2·‖w_head‖².

    ``w_s`` are the source weights of the backbone (parameter name -> detached tensor of the
    same shape). R is exactly 0 when fine-tuning starts, and its gradient on a backbone weight is
    α·(w − w_s). Returns a 0-d tensor. Example::

        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        >>> L2SP()(RegularizerInputs([("w", w)], [], {"w": torch.tensor([1.0, 0.0])}))  # ½·(0² + 2²) = 2
    """

    needs = frozenset({SOURCE_WEIGHTS})

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        drift = _squared_norm(p - inputs.source_weights[name] for name, p in inputs.backbone)
        return 0.5 * self.backbone_weight * drift + self.head_penalty(inputs.head)


class BatchSpectralShrinkage(Regularizer):
    """BSS (Chen et al., 2019): R = Σ_{i=1..k} σ_{-i}², the k smallest squared singular values of
    the batch's feature matrix F (N, D).

    Fine-tuning on few labels lets the spectral components with small singular values, which
    carry what the source knew but the target cannot confirm, grow untransferable; BSS shrinks
    them. σ are the singular values of F (min(N, D) of them, in decreasing order); the gradient
    flows into F through the SVD. Shapes: ``inputs.features`` (N, D) -> 0-d tensor. Example::

        >>> F = torch.diag(torch.tensor([3.0, 2.0, 1.0]))
        >>> BatchSpectralShrinkage(k=2)(RegularizerInputs([], [], features=F))  # 1² + 2² = 5
    """

    needs = frozenset({FEATURES})

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"BSS: k={k} must be >= 1 (the number of smallest singular values)")
        self.k = k

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        if inputs.features is None:
            raise ValueError("BSS needs the batch's features")
        singular = torch.linalg.svdvals(inputs.features.float())  # decreasing
        return singular[-min(self.k, singular.numel()) :].pow(2).sum()


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
