"""Lookahead towards an average of the weights, as in the airbench94 recipe.

Every ``every`` optimiser steps the slow copy moves towards the net and the net is set to it:

    θ̄ ← d·θ̄ + (1 − d)·θ,    θ ← θ̄,    d = peak · (t / T)^power,

t the step, T the run's steps. Early on d ≈ 0 (the net moves freely); towards the end the net is
pulled back to a long average. At the last step θ ← θ̄. Every floating-point tensor of the net's
state (weights and BatchNorm statistics) is averaged. The slow copy travels in checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer


class Lookahead(Callback):
    """See the module docstring. ``every``: steps between updates; ``peak``, ``power``: d's
    schedule (airbench94: 0.95⁵ and 3)."""

    def __init__(self, every: int = 5, peak: float = 0.95**5, power: float = 3.0) -> None:
        if every < 1 or not 0 <= peak <= 1:
            raise ValueError(f"Lookahead: every={every} must be >= 1 and peak={peak} in [0, 1]")
        self.every, self.peak, self.power = every, peak, power
        self.slow: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.slow is None:  # a resumed run has it from the checkpoint
            self.slow = {k: v.detach().clone() for k, v in _floating(pl_module.net).items()}

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        if step >= total:
            self.update(pl_module.net, 1.0)
        elif step % self.every == 0:
            self.update(pl_module.net, self.peak * (step / total) ** self.power)

    @torch.no_grad()
    def update(self, net: torch.nn.Module, decay: float) -> None:
        """θ̄ ← decay·θ̄ + (1 − decay)·θ, then θ ← θ̄ (no host read)."""
        assert self.slow is not None
        for name, value in _floating(net).items():
            slow = self.slow[name]
            slow.lerp_(value, 1 - decay)
            value.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict.get("slow")


def _floating(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if v.is_floating_point()}
