"""Deep CORAL (Sun & Saenko, 2016): align the second-order statistics of one layer's outputs,

    A = ‖C_s − C_t‖²_F / (4·D²),   C the (D, D) covariance of a domain's batch of outputs,

on the logits (D = K, the paper's choice: its last layer, fc8) or on ``features()`` (D = the
feature width). The paper picks λ so that CE and λ·A are about equal at the end of training.
"""

from __future__ import annotations

from typing import Any

import torch

from transferlab.losses.alignment.coral import CORALLoss
from transferlab.methods.adaptation.base import DomainAdaptationModule
from transferlab.utils.errors import ConfigError


class CORALModule(DomainAdaptationModule):
    """Args: layer: ``logits`` or ``features``, the outputs whose covariances are aligned."""

    def __init__(self, *args: Any, layer: str = "logits", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if layer not in ("logits", "features"):
            raise ConfigError(f"method.layer={layer} must be 'logits' or 'features'")
        self.layer = layer
        self.coral = CORALLoss()

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        if self.layer == "logits":
            return self.coral(logits_s, logits_t)
        return self.coral(f_s, f_t)
