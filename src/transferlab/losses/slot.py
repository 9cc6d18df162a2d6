"""The shape every slot member shares: a fine-tuning regularizer, a distillation loss.

A member is an ``nn.Module`` that declares in ``needs`` what it reads, so its family's module
computes only that, and may prepare itself once in ``setup`` (a regressor sized to the two nets, a
memory bank sized to the training set, DELTA's channel attention measured on training images)
from a ``SetupContext`` the family fills. A member never reaches into the datamodule or the
LightningModule: what it needs arrives in its inputs or in the context.

The vocabulary of ``needs``:

- ``SOURCE_WEIGHTS``: θ_s, the source backbone's parameters by name (fine-tuning);
- ``FEATURES``: the batch's features ``features(x)``, (N, D), of the trained net (and, in
  distillation, of the teacher);
- ``FEATURE_MAPS``: the outputs of the backbone layers named in ``layers``, of the trained net
  and of the frozen reference net (the source, the teacher) at ``reference_layers``;
- ``LOGITS``: the logits of the trained net and of the reference;
- ``INDICES``: each image's position in the training split (per-image state: a memory bank).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

SOURCE_WEIGHTS = "source_weights"
FEATURES = "features"
FEATURE_MAPS = "feature_maps"
LOGITS = "logits"
INDICES = "indices"


def _no_sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    raise RuntimeError("this context has no training images (built outside a fit)")


@dataclass
class SetupContext:
    """What a member's ``setup`` may use.

    ``stage``: ``fit``, ``validate`` or ``test`` (training-time state is only needed for ``fit``;
    parameters a checkpoint holds must exist at every stage). ``net``: the net being trained (a
    ``Classifier``). ``reference``: the frozen reference net (the source backbone in fine-tuning,
    the teacher in distillation), or None. ``training_sample(n)``: the first ``n`` training images
    and labels, augmented as in training, on ``device``. ``training_size``: images in the training
    split. Under DDP, work done once on rank 0 reaches the others through ``broadcast``.
    """

    stage: str
    net: nn.Module
    num_classes: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    reference: nn.Module | None = None
    training_sample: Callable[[int], tuple[torch.Tensor, torch.Tensor]] = _no_sample
    training_size: int = 0
    is_global_zero: bool = True
    broadcast: Callable[[Any], Any] = lambda value: value


class SlotMember(nn.Module):
    """Base of a slot member: ``needs`` (the inputs it reads), ``layers`` / ``reference_layers``
    (the backbone layers whose feature maps it reads, with ``FEATURE_MAPS``), and ``setup``."""

    needs: frozenset[str] = frozenset()
    layers: tuple[str, ...] = ()

    @property
    def reference_layers(self) -> tuple[str, ...]:
        """The reference net's layers paired with ``layers`` (the same names by default)."""
        return self.layers

    def setup(self, context: SetupContext) -> None:
        """Prepare once, before training or before a checkpoint is restored into the module
        (so parameters and buffers made here are in place for it). Default: nothing."""


def training_sample(datamodule: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images and labels of a fresh training loader (augmented as in training),
    drawn without moving the training's random streams (the run trains as it would without it)."""
    images, labels = [], []
    with datamodule.streams_kept():
        for batch in datamodule.train_dataloader():
            images.append(batch[0])
            labels.append(batch[1])
            if sum(len(x) for x in images) >= n:
                break
    return torch.cat(images)[:n], torch.cat(labels)[:n]
