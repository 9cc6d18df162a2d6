"""The parameter-efficient fine-tuning slot: a member decides which of the backbone's parameters
train, adding its own where it needs them (LoRA's low-rank factors, an adapter's bottleneck); the
head always trains. A member edits the net once (``apply``), before the optimiser is built.

A run that trains a part of the net keeps only that part in its checkpoints (``trained_state``:
the trained parameters, the member's own modules and the BatchNorm statistics) with a pointer to
where the rest comes from (the source checkpoint, or the pretrained net's weights file), so a
sweep of 30 LoRA runs does not store 30 backbones; loading such a checkpoint rebuilds the net from
that source, applies the member again and loads the part (``nets.reference.build_net``).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from transferlab.nets.base import Classifier
from transferlab.utils.checkpoint import PEFT_KEY  # noqa: F401  (the record's key, re-exported)


class ParameterEfficient:
    """Base of every member. ``apply(net)`` edits the backbone in place and sets which of its
    parameters train (``requires_grad``). ``full``: every parameter trains (a checkpoint holds the
    whole net); ``adds_parameters``: the trained parameters are new ones with no source value, so
    a penalty toward the source (L2-SP) has nothing to pull."""

    full = False
    adds_parameters = False

    def apply(self, net: Classifier) -> None:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The member's config (``_target_`` and its arguments, read back from the attributes of
        the same names): what a partial checkpoint records to apply it again."""
        cls = type(self)
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        parameters = inspect.signature(cls.__init__).parameters.values()
        arguments = [p.name for p in parameters if p.name != "self" and p.kind in named]
        values = {n: getattr(self, n) for n in arguments}
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **values}


def trained_fraction(net: Classifier) -> tuple[int, int]:
    """(parameters that train, all parameters) of ``net``."""
    total = sum(p.numel() for p in net.parameters())
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return trained, total


def trained_state(net: Classifier, prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of ``state`` (a state dict of the module holding ``net`` at ``prefix``) that a
    partial checkpoint keeps: the parameters that train and every buffer (BatchNorm statistics
    move in training whatever trains; they are small)."""
    keep = {prefix + name for name, p in net.named_parameters() if p.requires_grad}
    keep |= {prefix + name for name, _ in net.named_buffers()}
    return {k: v for k, v in state.items() if k in keep}
