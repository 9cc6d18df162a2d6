"""The profiler a run has when none is asked for."""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler records nothing, yet Lightning wraps every hook call in
    ``profiler.profile(name)``: a generator-based context manager of about eight Python calls,
    some 50 times per training step. This one returns one shared no-op context instead.
    ``trainer.profiler=simple`` (or ``advanced``, ``pytorch``) profiles for real."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str) -> Any:
        return self._nothing
