"""L2-SP: a penalty toward the source weights."""

from __future__ import annotations

import torch

from transferlab.losses.regularizers.base import ParameterRegularizer, RegularizerInputs, squared_norm
from transferlab.losses.slot import SOURCE_WEIGHTS


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
        drift = squared_norm(p - inputs.source_weights[name] for name, p in inputs.backbone)
        return 0.5 * self.backbone_weight * drift + self.head_penalty(inputs.head)
