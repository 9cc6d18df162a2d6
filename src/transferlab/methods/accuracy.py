"""Training accuracy as counters on the device: a few kernels per step, read once per epoch.

A torchmetrics ``MulticlassAccuracy`` validates its inputs and keeps its states per update (about
60 operators and 120 µs of host time per training step). Training accuracy needs two counts, so
they are kept on the device, added to without a host read, and read when logged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy


class RunningAccuracy(nn.Module):
    """Top-1 and, with more than five classes (or ``top5``), top-5 accuracy of the batches seen
    since ``reset``.

    Example:
        >>> accuracy = RunningAccuracy(num_classes=3)
        >>> accuracy.update(torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]), torch.tensor([0, 1]))
        >>> accuracy.compute()
        {'acc': tensor(0.5000)}
    """

    def __init__(self, num_classes: int, top5: bool | None = None) -> None:
        super().__init__()
        self.top5 = num_classes > 5 if top5 is None else top5
        # correct at 1 (and at 5); not persistent: an epoch's counts never enter a checkpoint
        self.register_buffer("correct", torch.zeros(1 + self.top5, dtype=torch.long), persistent=False)
        self.seen = 0  # a host count: the batch sizes are known without reading the device

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: ``logits`` (N, K), detached; ``labels`` (N,) class indices. Four kernels
        (top-1) or six (top-5), no host read."""
        if self.top5:  # the running count of hits over the top 5: column 0 is top-1, column 4 top-5
            hits = (logits.topk(5, dim=1).indices == labels[:, None]).cumsum(1)
            self.correct.add_(hits[:, ::4].sum(0))
        else:
            self.correct.add_(logits.argmax(1).eq_(labels).sum())
        self.seen += labels.shape[0]

    def compute(self, reduce: Any = None) -> dict[str, torch.Tensor]:
        """``{"acc", "acc_top5"}`` over the batches seen; ``reduce`` sums a tensor over the
        processes (``trainer.strategy.reduce`` with ``reduce_op="sum"``) under DDP."""
        counts = torch.cat([self.correct, self.correct.new_tensor([self.seen])]).float()
        if reduce is not None:
            counts = reduce(counts)
        values = {"acc": counts[0] / counts[-1]}
        if self.top5:
            values["acc_top5"] = counts[1] / counts[-1]
        return values

    def reset(self) -> None:
        self.correct.zero_()
        self.seen = 0


def accuracy_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Top-1 and, with more than five classes, top-5 micro accuracy."""
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)
