"""Train a method: ``python -m transferlab.train experiment=cifar10_source [overrides]``.

``train(cfg)`` is a plain function (tests call it with a composed config); ``main`` wraps it for
the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf

from transferlab.data.base import ClassificationDataModule, per_device_batch_size
from transferlab.pipeline import prepare_pretraining
from transferlab.utils.checkpoint import write_manifest
from transferlab.utils.config import (
    instantiate_callbacks,
    instantiate_loggers,
    log_final_hparams,
    register_resolvers,
    to_plain,
)
from transferlab.utils.entry import (
    check_override_keys,
    log,
    record_failure,
    silence_known_warnings,
    user_errors,
)
from transferlab.utils.errors import ConfigError
from transferlab.utils.resume import (
    AtomicCheckpointIO,
    RNGStateCallback,
    claim_output_dir,
    flat_config,
    resume_from,
)
from transferlab.utils.run_files import (
    FAILED_FILE,
    best_checkpoint,
    finished_run,
    scalar_metrics,
    training_progress,
    write_json_atomic,
)
from transferlab.utils.schema import validate_config

register_resolvers()


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Fit ``cfg.method`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``.

    ``extra_callbacks`` join the configured ones (for scripts that measure or probe a run).
    A directory that holds a finished run of the same config is not trained again (its metrics
    are returned); one that holds an interrupted run resumes from its ``last.ckpt``.
    """
    validate_config(cfg)  # typos and wrong types fail here, before any data is read
    if str(cfg.get("optimized_metric") or "").startswith("test/"):
        raise ConfigError(
            f"optimized_metric={cfg.optimized_metric} is a test metric; tune on a validation "
            f"metric (e.g. optimized_metric=val/acc) and report the test metric once"
        )
    output_dir = Path(cfg.paths.output_dir)
    flat = flat_config(cfg)
    claim_output_dir(output_dir, flat)
    done = finished_run(output_dir)
    if done is not None:
        log.info("finished before, skipped: %s", output_dir)
        return done
    (output_dir / FAILED_FILE).unlink(missing_ok=True)  # a retry of a failed job

    if cfg.get("pretrain"):  # a pipeline: the pretraining stage first (trained once, then cached)
        pretrained_dir = prepare_pretraining(cfg, train)
        OmegaConf.update(
            cfg, cfg.pretrain.get("pass_to", "method.source_ckpt"), str(pretrained_dir), force_add=True
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    ckpt_path = resume_from(cfg.get("ckpt_path"), output_dir, flat)

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
    if cfg.get("channels_last"):
        model.use_channels_last()
    if cfg.get("compile"):
        model.net.compile()  # in place: parameter names and checkpoints stay as they are

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"),
        with_logger=bool(loggers),
        with_progress_bar=cfg.trainer.get("enable_progress_bar", True),
    )
    callbacks += [RNGStateCallback(), *(extra_callbacks or [])]
    plugins = [] if cfg.trainer.get("plugins") else [AtomicCheckpointIO()]
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None
    )
    per_device_batch_size(datamodule.batch_size, trainer.world_size)  # fail before any work
    for logger in loggers:
        logger.log_hyperparams(to_plain(cfg))

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = scalar_metrics(trainer.callback_metrics)
    best = best_checkpoint(trainer)
    if cfg.get("test"):
        tested = best.get("ckpt_path")  # the best epoch, not the last one
        trainer.test(
            model,
            datamodule=datamodule,
            ckpt_path=tested,
            weights_only=True,
            verbose=cfg.get("verbose", True),
        )
        metrics |= scalar_metrics(trainer.callback_metrics)
        best["tested_ckpt"] = tested or "final weights"

    summary = {
        "final": metrics,
        "best": best,
        "test_class_acc": model.class_accuracy,
        **training_progress(trainer, best.get("last_ckpt_path")),
    }
    log_final_hparams(loggers, flat, metrics, best)
    if trainer.is_global_zero:
        if best.get("ckpt_path"):
            write_manifest(best["ckpt_path"], metadata, metrics)
        write_json_atomic(output_dir / "metrics.json", summary)  # last: the done marker
        log.info("metrics: %s", {k: metrics[k] for k in sorted(metrics) if "/acc" in k})
        log.info("run directory: %s", output_dir)
    return summary


def optimized_value(cfg: DictConfig, summary: dict[str, Any]) -> float | None:
    """What a sweeper maximises: the best validation value of ``optimized_metric``."""
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    value = summary["best"].get(metric, summary["final"].get(metric))
    return None if value is None else float(value)


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    silence_known_warnings()
    with user_errors(), record_failure(cfg.paths.output_dir) as outcome:
        summary = train(cfg)
    return float("nan") if outcome.failed else optimized_value(cfg, summary)


def main() -> None:
    check_override_keys("train", sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
