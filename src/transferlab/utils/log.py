"""The project's logger: ``log.info(...)`` lines go to the run's ``<task>.log`` and the terminal."""

from __future__ import annotations

import logging

log = logging.getLogger("transferlab")
