"""Stop a run whose training loss turned NaN or infinite, without a host sync on every step.

``if not torch.isfinite(loss)`` makes the host wait for the device to finish the step before it
can queue the next one; on a GPU that stall, every step, costs throughput. ``NonFiniteWatch``
instead keeps its note on the device (a few scalar kernels queued behind each step) and reads it
only now and then: every ``every`` batches, at the last batch of an epoch, and before a
checkpoint is written, so no checkpoint ever holds the weights of a step taken on a non-finite
loss. The error names the first such step and its loss terms, as the per-step check did.
"""

from __future__ import annotations

import torch

from transferlab.utils.errors import TrainingError


class NonFiniteWatch:
    """Notes on the device the first training step whose ``loss`` term is not finite.

    Args:
        every: read the note (one host sync) once per this many batches; the training loop's
            logging cadence (``trainer.log_every_n_steps``) is the natural choice, since Lightning
            reads the logged values, and so waits for the device, on those steps anyway.

    Example:
        >>> watch = NonFiniteWatch(every=2)
        >>> watch.observe({"loss": torch.tensor(1.0)}, step=0)
        >>> watch.observe({"loss": torch.tensor(float("nan"))}, step=1)
        >>> watch.due(batch_idx=1)
        True
        >>> watch.check(epoch=0)
        Traceback (most recent call last):
        ...
        transferlab.utils.errors.TrainingError: non-finite loss at step 1 (epoch 0): loss=nan; ...
    """

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every={every}: the note is read every `every` batches, a positive number")
        self.every = every
        self.names: tuple[str, ...] = ()
        self.seen: torch.Tensor | None = None  # bool: a non-finite loss since the note was made
        self.step = torch.zeros((), dtype=torch.long)  # global step of the first one
        self.values = torch.zeros(0)  # its loss terms, in the order of ``names``
        self._now = torch.zeros((), dtype=torch.long)

    def observe(self, terms: dict[str, torch.Tensor], step: int) -> None:
        """Queue the test of this step's ``terms["loss"]``; no host sync."""
        loss = terms["loss"].detach()
        names = tuple(terms)
        if self.seen is None or names != self.names or self.seen.device != loss.device:
            if self.seen is not None:
                self.check(epoch=-1)  # the terms changed: settle the old note first (rare)
            self._start(names, loss.device)
        values = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
        bad = ~torch.isfinite(loss)
        first = bad & ~self.seen
        self.values = torch.where(first, values, self.values)
        self.step = torch.where(first, self._now.fill_(step), self.step)
        self.seen |= bad

    def due(self, batch_idx: int, last_batch: bool = False) -> bool:
        """Whether to read the note after batch ``batch_idx`` (0-based) of an epoch."""
        return last_batch or (batch_idx + 1) % self.every == 0

    def check(self, epoch: int) -> None:
        """Raise ``TrainingError`` naming the first non-finite step, if there was one (one sync)."""
        if self.seen is None or not bool(self.seen):
            return
        values = ", ".join(f"{n}={v:.4g}" for n, v in zip(self.names, self.values.tolist(), strict=True))
        where = f" (epoch {epoch})" if epoch >= 0 else ""
        raise TrainingError(
            f"non-finite loss at step {int(self.step)}{where}: {values}; "
            f"lower the learning rate (method.optimizer.lr) or check the data"
        )

    def _start(self, names: tuple[str, ...], device: torch.device) -> None:
        self.names = names
        self.seen = torch.zeros((), dtype=torch.bool, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.values = torch.zeros(len(names), device=device)
        self._now = torch.zeros((), dtype=torch.long, device=device)
