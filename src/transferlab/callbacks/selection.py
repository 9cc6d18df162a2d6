"""Each validated epoch of a domain-adaptation run, one line of ``selection.jsonl``: for the sweep's
model-selection report only (``report/selection.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
from lightning.pytorch import Callback

from transferlab.utils.selection import SELECTION_FILE


class SelectionRecord(Callback):
    """Appends the module's ``validation_record`` (epoch, step, every validator's score and the
    target's test accuracy at that epoch) after each validation, on rank 0. A resumed run that
    validates an epoch again appends it again; the report keeps the last line of each epoch."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = getattr(pl_module, "validation_record", None)
        pl_module.validation_record = None
        if record is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / SELECTION_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
