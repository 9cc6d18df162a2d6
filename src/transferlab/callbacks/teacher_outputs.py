"""The teacher's outputs on the un-augmented training images, computed once per run and, on
request, shared on disk by the jobs of a sweep (``method.teacher_input=clean``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch import Callback

from transferlab.utils.run_files import write_atomic


class CleanTeacherOutputs(Callback):
    """Before training, hands the distillation module (``clean_teacher``) its teacher's ``kept``
    outputs (logits; pooled features where a loss reads them) of every training image in order,
    from ``cache_dir`` when a job of the sweep computed them before: the cache is keyed by the
    teacher's sha256, the training images and what is kept, and written atomically on rank 0."""

    def __init__(self, kept: tuple[str, ...], cache_dir: str | None = None, teacher_sha256: str = "") -> None:
        self.kept, self.cache_dir, self.teacher_sha256 = kept, cache_dir, teacher_sha256

    def cache_file(self, datamodule: L.LightningDataModule) -> Path | None:
        if not self.cache_dir:
            return None
        key = f"{self.teacher_sha256[:16]}-{datamodule.train_fingerprint()}-{'-'.join(self.kept)}"
        return Path(self.cache_dir) / "teacher_logits" / f"{key}.pt"

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        cache_file = self.cache_file(datamodule)
        if cache_file is not None and cache_file.is_file():
            outputs = torch.load(cache_file, map_location="cpu", weights_only=True)
        else:
            outputs = pl_module.compute_clean_outputs(datamodule.clean_train_dataset(), self.kept)
            if cache_file is not None and trainer.is_global_zero:
                write_atomic(cache_file, lambda tmp: torch.save(outputs, tmp))
        pl_module.clean_teacher = {k: v.to(pl_module.device) for k, v in outputs.items()}
