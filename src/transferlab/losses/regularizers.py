"""Fine-tuning regularizers R: min L_t(θ_t) + λ·R. λ is applied by the method.

A regularizer sees a ``RegularizerInputs`` and declares in ``needs`` which of its optional parts it
reads, so the method computes only those:

- ``source_weights``: θ_s, the source backbone's parameters (L2-SP);
- ``features``: the batch's features from the fine-tuned net, (N, D) (BSS);
- ``source_net``: the feature maps of a frozen copy of the source backbone on the same batch,
  beside the fine-tuned net's (DELTA), at the backbone layers named in ``layers``.

The backbone and head parameters are always there. α (``backbone_weight``) and β (``head_weight``)
are Li et al.'s names for the weights of the parameter penalties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

Named = Iterable[tuple[str, torch.Tensor]]

SOURCE_WEIGHTS = "source_weights"
FEATURES = "features"
SOURCE_NET = "source_net"


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


class Regularizer(nn.Module):
    """Base of every fine-tuning regularizer.

    ``needs``: the optional inputs it reads (``SOURCE_WEIGHTS``, ``FEATURES``, ``SOURCE_NET``);
    ``layers``: the backbone layers whose feature maps it reads (with ``SOURCE_NET``);
    ``regularises_backbone`` / ``regularises_head``: which parameters already carry a penalty, so
    the method switches the optimiser's weight decay off for them.
    """

    needs: frozenset[str] = frozenset()
    layers: tuple[str, ...] = ()
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

    FM_j(w_s, x) comes from a frozen copy of the source backbone on the same batch (no gradient).
    With ``attention``, each channel c of layer j is weighted as in DELTA's attention variant:
    R = Σ_j ½ Σ_{n,c} C_j·W_j[c]·‖FM_j[n, c] − FM_j^s[n, c]‖² / (H_j·W_j), where W_j sums to 1 over
    the C_j channels (so C_j·W_j averages 1) and is set by the method from how much the source's
    loss rises when the channel is removed (``channel_attention``); without it, every W_j[c] = 1/C_j
    and the term is the plain distance divided by the map's area.

    ``layers``: names of modules inside the backbone (``"3"`` in a Sequential, ``"layer2"`` in a
    ResNet); ``[""]`` (the default) is the backbone's output, the features (N, D).
    Shapes: maps (N, C, H, W) or (N, D); returns a 0-d tensor.
    """

    needs = frozenset({SOURCE_NET})

    def __init__(self, layers: Sequence[str] = ("",), attention: bool = False) -> None:
        super().__init__()
        if not layers:
            raise ValueError("DELTA: layers must name at least one backbone layer ('' is its output)")
        self.layers = tuple(str(layer) for layer in layers)
        self.attention = attention
        self.channel_weights: dict[str, torch.Tensor] = {}  # layer -> W_j (C_j,), set by the method

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
