"""L2: weight decay as an explicit penalty, toward zero."""

from __future__ import annotations

import torch

from transferlab.losses.regularizers.base import ParameterRegularizer, RegularizerInputs, squared_norm


class L2(ParameterRegularizer):
    """R = α/2·‖w_backbone‖² + β/2·‖w_head‖²: explicit weight decay, a pull toward zero.

    Shapes: any parameter shapes; returns a 0-d tensor. Example::

        >>> net = torch.nn.Linear(2, 2)
        >>> L2(backbone_weight=1.0)(RegularizerInputs(list(net.named_parameters()), []))  # ½·Σ w²
    """

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        return 0.5 * self.backbone_weight * squared_norm(p for _, p in inputs.backbone) + self.head_penalty(
            inputs.head
        )
