"""Loggers as the template configures them."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger without a flush of the event file after every logging step
    (Lightning calls ``save()`` each time it logs: a write and two file-system checks per step).
    The events reach the disk when the writer's queue fills, every ``flush_secs`` (the writer's
    option, 10 s in ``conf/logger/tensorboard.yaml``), and when the run ends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved_once = False

    def purge_from(self, step: int) -> None:
        """A resumed run: TensorBoard hides this run's events at ``step`` and after that an
        earlier attempt wrote (the writer's ``purge_step``), so the curves show one run. Call
        before the first event."""
        self._kwargs["purge_step"] = step

    @rank_zero_only
    def save(self) -> None:
        if not self._saved_once:  # the first one writes hparams.yaml, as Lightning's does
            super().save()
            self._saved_once = True
