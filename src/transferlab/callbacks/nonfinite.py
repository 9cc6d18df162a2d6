"""Stop a run whose training loss turned NaN or infinite, without a host sync on every step.

``if not torch.isfinite(loss)`` makes the host wait for the device to finish the step before it
can queue the next one; on a GPU that stall, every step, costs throughput. ``NonFiniteWatch``
instead keeps each step's loss terms on the device (one ``stack`` queued behind the step) and
examines them only now and then: on the steps that write logs (Lightning reads the device then
anyway), at the last batch of an epoch, and before a checkpoint is written (a callback's
``on_save_checkpoint`` runs before the file is written), so no checkpoint ever
holds the weights of a step taken on a non-finite loss. The error names the first such step and
its loss terms, as a per-step check would.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback

from transferlab.utils.errors import TrainingError
from transferlab.utils.log import writes_step_logs

MAX_PENDING = 10_000  # steps kept unread at most (the training loop reads far more often)


class NonFiniteWatch(Callback):
    """Keeps on the device the loss terms of the steps since it was last read, and names the
    first whose ``loss`` is not finite when read (``check``). As a callback (every method is
    handed one) it reads the terms ``training_step`` returns.

    Example:
        >>> watch = NonFiniteWatch()
        >>> watch.observe({"loss": torch.tensor(1.0)}, step=0)
        >>> watch.observe({"loss": torch.tensor(float("nan"))}, step=1)
        >>> watch.check(epoch=0)
        Traceback (most recent call last):
        ...
        transferlab.utils.errors.TrainingError: non-finite loss at step 1 (epoch 0): loss=nan; ...
    """

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self._pending: list[torch.Tensor] = []  # each unread step's loss terms, on the device
        self._steps: list[int] = []  # and its global step

    def observe(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Keep this step's ``terms`` (0-dim tensors, ``loss`` first or anywhere); no host sync."""
        names = tuple(terms)
        if names != self.names or len(self._pending) >= MAX_PENDING:
            self.check(epoch=-1)  # settle the earlier steps under their own names (rare)
            self.names = names
        self._pending.append(torch.stack(tuple(terms.values())).detach())
        self._steps.append(step)

    def check(self, epoch: int) -> None:
        """Raise ``TrainingError`` naming the first non-finite step since the last check, if there
        was one (one host read; two when there was)."""
        if not self._pending:
            return
        values, steps = torch.stack(self._pending), self._steps
        self._pending, self._steps = [], []
        bad = ~torch.isfinite(values[:, self.names.index("loss")])
        if not bool(bad.any()):
            return
        row = int(bad.nonzero()[0])
        shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, values[row].tolist(), strict=True))
        where = f" (epoch {epoch})" if epoch >= 0 else ""
        raise TrainingError(
            f"non-finite loss at step {steps[row]}{where}: {shown}; "
            f"lower the learning rate (method.optimizer.lr) or check the data"
        )

    # --- as a callback -----------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(outputs, dict):
            self.observe(outputs, getattr(self, "_step", trainer.global_step))
        if writes_step_logs(trainer):  # Lightning waits for the device on these steps anyway
            self.check(trainer.current_epoch)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.check(trainer.current_epoch)  # never write weights stepped on a NaN loss
