"""The project's logger (``log.info(...)`` lines go to the run's ``<task>.log`` and the terminal),
and when a training step's values reach the metric loggers."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("transferlab")


def writes_step_logs(trainer: Any) -> bool:
    """Whether this training step's values reach the loggers (every ``trainer.log_every_n_steps``
    steps) or end the epoch (the run's final values): ``self.log`` costs about a millisecond of host
    time per value, and Lightning reads the device on those steps anyway."""
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or connector.should_update_logs or trainer.is_last_batch
