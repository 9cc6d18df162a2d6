"""Clean shutdown of a CPU (gloo) process group."""

from __future__ import annotations

import atexit
from typing import Any

import torch.distributed as dist
from lightning.pytorch import Callback

_registered = False


def destroy_process_group() -> None:
    """Destroy the default process group if one is still up (safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlooShutdown(Callback):
    """Destroys a gloo process group at interpreter exit, while Python is still alive.

    Without it, gloo's worker threads are torn down during interpreter finalisation and a DDP
    worker sometimes aborts on exit ("terminate called without an active exception", SIGABRT),
    failing a run that had finished. Lightning registers this handler for NCCL only.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        global _registered
        if _registered or not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() == "gloo":
            atexit.register(destroy_process_group)
            _registered = True
