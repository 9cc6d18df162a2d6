"""Train a method: ``python -m transferlab.train experiment=cifar10_source [overrides]``.

``train(cfg)`` is a plain function (tests call it with a composed config); ``main`` wraps it for
the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf

from transferlab.data.base import ClassificationDataModule, per_device_batch_size
from transferlab.pipeline import prepare_source
from transferlab.utils.checkpoint import resolve_checkpoint_path, write_manifest
from transferlab.utils.config import (
    instantiate_callbacks,
    instantiate_loggers,
    register_resolvers,
    to_plain,
)
from transferlab.utils.entry import log, silence_known_warnings, user_errors
from transferlab.utils.run_files import (
    best_checkpoint,
    scalar_metrics,
    training_progress,
    write_json_atomic,
)

register_resolvers()


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Fit ``cfg.method`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``.

    ``extra_callbacks`` join the configured ones (for scripts that measure or probe a run).
    """
    if cfg.get("source"):  # a pipeline: the source stage first (trained once, then cached)
        source_dir = prepare_source(cfg, train)
        OmegaConf.update(
            cfg, cfg.source.get("pass_to", "method.source_ckpt"), str(source_dir), force_add=True
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path = str(resolve_checkpoint_path(cfg.ckpt_path)) if cfg.get("ckpt_path") else None

    datamodule: ClassificationDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # the net's head needs the class count
    net = hydra.utils.instantiate(cfg.net, num_classes=datamodule.num_classes)
    metadata = {
        "net": to_plain(cfg.net),
        "data": to_plain(cfg.data),
        "num_classes": datamodule.num_classes,
        "class_names": datamodule.class_names,
        "method": cfg.method._target_,
    }
    # partial first: metadata holds configs with _target_ that must stay plain data
    model = hydra.utils.instantiate(cfg.method, _partial_=True)(net=net, metadata=metadata)

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), with_logger=bool(loggers))
    callbacks += extra_callbacks or []
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    per_device_batch_size(datamodule.batch_size, trainer.world_size)  # fail before any work
    for logger in loggers:
        logger.log_hyperparams(to_plain(cfg))

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = scalar_metrics(trainer.callback_metrics)
    best = best_checkpoint(trainer)
    if cfg.get("test"):
        tested = best.get("ckpt_path")  # the best epoch, not the last one
        trainer.test(model, datamodule=datamodule, ckpt_path=tested, weights_only=True)
        metrics |= scalar_metrics(trainer.callback_metrics)
        best["tested_ckpt"] = tested or "final weights"

    summary = {
        "final": metrics,
        "best": best,
        **training_progress(trainer, best.get("last_ckpt_path")),
    }
    if trainer.is_global_zero:
        output_dir = Path(cfg.paths.output_dir)
        write_json_atomic(output_dir / "metrics.json", summary)
        if best.get("ckpt_path"):
            write_manifest(best["ckpt_path"], metadata, metrics)
        log.info("metrics: %s", {k: metrics[k] for k in sorted(metrics) if "/acc" in k})
        log.info("run directory: %s", output_dir)
    return summary


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    silence_known_warnings()
    with user_errors():
        summary = train(cfg)
    metric = cfg.get("optimized_metric")
    return summary["final"].get(metric) if metric else None


if __name__ == "__main__":
    main()
