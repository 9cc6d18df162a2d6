"""The transferability scores of the net a fine-tuning run starts from, before it trains."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch import Callback

from transferlab.nets.reference import build_net
from transferlab.transferability.base import TransferabilityScore
from transferlab.transferability.extract import extract, score_all
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.log import log


class TransferabilityProbe(Callback):
    """Score the starting net once, before training, on the target's training images (no
    augmentation): the source's features, and the source's predictions over its own classes for
    the scores that read them (none for a pretrained net whose head is not kept; a random net's
    own, from scratch). Written to the module's ``reports`` (``reports.transferability`` in
    ``metrics.json``), so a sweep over sources sets them against the measured outcomes. Computed
    on rank 0, sent to the others; a resumed run keeps the first run's scores."""

    def __init__(self, scores: dict[str, TransferabilityScore], source_ckpt: str | None) -> None:
        self.scores = scores
        self.source_ckpt = source_ckpt

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.scores or "transferability" in pl_module.reports:
            return
        start = time.perf_counter()
        pl_module.reports["transferability"] = self.score(trainer, pl_module)
        pl_module.reports["transferability_seconds"] = round(time.perf_counter() - start, 3)

    def score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        clean = getattr(trainer.datamodule, "clean_train_dataset", None)
        if clean is None or trainer.global_step > 0:  # no plain training set, or resumed without them
            return {}
        values = None
        if trainer.is_global_zero:
            dataset = clean()
            if self.source_ckpt is not None:
                net, predicts = build_net(open_checkpoint(self.source_ckpt, "method.source_ckpt")), True
            else:
                net, predicts = pl_module.net, not getattr(pl_module.net, "pretrained", False)
            features, probabilities = extract(net, dataset, device=pl_module.device)
            labels = dataset.labels.numpy()
            values = score_all(features, probabilities if predicts else None, labels, self.scores)
            log.info("transferability of the starting net: %s", {k: round(v, 4) for k, v in values.items()})
        return trainer.strategy.broadcast(values, src=0)
