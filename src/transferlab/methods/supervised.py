"""Plain supervised training: L = CE(y, f(x)), optionally with label smoothing.

What a source model or a teacher is trained with, and what fine-tuning and distillation add
their transfer terms to.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transferlab.methods.base import ClassificationModule


class SupervisedModule(ClassificationModule):
    """Cross-entropy training of ``net``; ``label_smoothing`` ε mixes the targets with uniform."""

    def __init__(self, *args: Any, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        return {"loss": self.criterion(logits, labels)}, logits, labels
