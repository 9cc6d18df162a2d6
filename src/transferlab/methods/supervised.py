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
    """Cross-entropy training of ``net``; ``label_smoothing`` ε mixes the targets with uniform.

    Two options of fast recipes (airbench94): ``flip_average`` evaluates on the mean of the
    logits of each image and its mirror image; ``norm_lr_scale`` multiplies the learning rate of
    the BatchNorm parameters (a net whose BatchNorm scales are frozen learns its shifts fast).
    """

    def __init__(
        self,
        *args: Any,
        label_smoothing: float = 0.0,
        flip_average: bool = False,
        norm_lr_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.flip_average = flip_average
        self.norm_lr_scale = norm_lr_scale

    def evaluation_forward(self, route: Any, images: torch.Tensor) -> torch.Tensor:
        logits = super().evaluation_forward(route, images)
        if self.flip_average:
            logits = 0.5 * (logits + self(images.flip(-1)))
        return logits

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.norm_lr_scale == 1.0:
            return groups
        norms = {
            id(p)
            for m in self.net.modules()
            if isinstance(m, nn.modules.batchnorm._NormBase)
            for p in m.parameters(recurse=False)
        }
        split = []
        for group in groups:
            moved = [p for p in group["params"] if id(p) in norms]
            group["params"] = [p for p in group["params"] if id(p) not in norms]
            scale = group.get("lr_scale", 1.0) * self.norm_lr_scale
            split += [group, {**group, "params": moved, "name": f"{group['name']}_norm", "lr_scale": scale}]
        return [group for group in split if group["params"]]

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        return {"loss": self.criterion(logits, labels)}, logits, labels
