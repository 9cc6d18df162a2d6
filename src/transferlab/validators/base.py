"""The validators' slot: scores that pick a model without target labels (and the oracle beside them).

A validator reads one validation epoch's outputs (``ValidationOutputs``: logits, features and, for
the source, labels of the source and target validation images) and returns one number, oriented
so that **higher is better**. Only a validator that declares ``uses_target_labels`` (the oracle)
is handed the target's labels. The adaptation family computes every validator of
``method.validators`` at each validation epoch and logs it as ``val/validator/<name>``; ``select``
names the one that picks the checkpoint.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ValidationOutputs:
    """One validation epoch: per domain the logits (N, K), the features (N, D) and the labels (N,)
    of its validation images (``target_labels`` is None for every validator but the oracle)."""

    source_logits: torch.Tensor
    source_features: torch.Tensor
    source_labels: torch.Tensor
    target_logits: torch.Tensor
    target_features: torch.Tensor
    target_labels: torch.Tensor | None = None

    def without_target_labels(self) -> ValidationOutputs:
        return dataclasses.replace(self, target_labels=None)


class Validator:
    """Base of a validator: ``score(outputs) -> float``, higher is better."""

    #: whether it reads the target's labels (only the oracle does: it is not a label-free validator)
    uses_target_labels = False

    def score(self, outputs: ValidationOutputs) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_k p_k·log p_k per row: (N, K) -> (N,)."""
    return -(probabilities * torch.log(probabilities.clamp_min(1e-12))).sum(dim=1)


def target_probabilities(outputs: ValidationOutputs) -> torch.Tensor:
    """p = softmax(target logits) in float32, (N_t, K)."""
    return outputs.target_logits.float().softmax(dim=1)
