"""Train a method: ``python -m transferlab.train experiment=cifar10_source [overrides]``.

``train(cfg)`` is a plain function (tests call it with a composed config); ``main`` wraps it for
the command line.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from transferlab.data.base import ClassificationDataModule, per_device_batch_size
from transferlab.methods.base import ClassificationModule
from transferlab.nets.timm_net import apply_net_data
from transferlab.pipeline import has_pretraining_stage, prepare_pretraining
from transferlab.utils.checkpoint import write_manifest
from transferlab.utils.config import (
    apply_protocol,
    flat_config,
    instantiate_callbacks,
    instantiate_loggers,
    register_resolvers,
    to_plain,
)
from transferlab.utils.contract import RunContract, check_handed
from transferlab.utils.distributed import GlooShutdown
from transferlab.utils.entry import (
    command_line_keys,
    continue_in_place,
    preflight,
    record_failure,
    run_label,
    silence_known_warnings,
    user_errors,
)
from transferlab.utils.errors import ConfigError
from transferlab.utils.hparams import close_loggers, log_final_hparams
from transferlab.utils.log import log
from transferlab.utils.loggers import TensorBoardLogger
from transferlab.utils.profiler import NoProfiler
from transferlab.utils.resume import (
    AtomicCheckpointIO,
    ResumePoint,
    claim_output_dir,
    resume_from,
    run_to_continue,
)
from transferlab.utils.run_files import (
    FAILED_FILE,
    best_checkpoint,
    finished_run,
    save_final_last_checkpoint,
    scalar_metrics,
    training_progress,
    write_json_atomic,
)
from transferlab.utils.schema import validate_config
from transferlab.utils.selection import check_selection

register_resolvers()

DATA_INIT_IMAGES = 5000  # training images a net's data-dependent initialisation reads


def train(cfg: DictConfig, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Fit ``cfg.method`` on ``cfg.data``, test the best checkpoint, write ``metrics.json``.

    ``extra_callbacks`` join the configured ones (for scripts that measure or probe a run).
    A directory that holds a finished run of the same config is not trained again (its metrics
    are returned); one that holds an interrupted run resumes from its ``last.ckpt``.

    The run's phases, each in one function: check the config and claim the run directory; train
    the pipeline's pretraining stage (a source or a teacher); build the data, model and trainer;
    fit and test; record the metrics.
    """
    output_dir, done = prepare_run_dir(cfg)
    if done is not None:
        log.info("finished before, skipped: %s", output_dir)
        return done
    if has_pretraining_stage(cfg):  # a pipeline: the pretraining stage first (trained once, then cached)
        pretrained_dir = prepare_pretraining(cfg, train)
        OmegaConf.update(
            cfg, cfg.pretrain.get("pass_to", "method.source_ckpt"), str(pretrained_dir), force_add=True
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    resumed = resume_from(cfg.get("ckpt_path"), output_dir)
    run = build(cfg, extra_callbacks, resumed)
    summary = fit_and_test(cfg, run, resumed.path if resumed else None)
    record(output_dir, flat_config(cfg), run, summary)  # with the source/teacher the stage passed
    return summary


def prepare_run_dir(cfg: DictConfig) -> tuple[Path, dict[str, Any] | None]:
    """Check the config, claim its run directory (the one of the unfinished run a ``ckpt_path``
    continues); return (directory, the metrics of a finished run there or None)."""
    apply_protocol(cfg, command_line_keys())  # a paper's settings for its own methods, before the check
    apply_net_data(cfg, command_line_keys())  # a pretrained timm net's normalisation (and input size)
    validate_config(cfg)  # typos and wrong types fail here, before any data is read
    if str(cfg.get("optimized_metric") or "").startswith("test/"):
        raise ConfigError(
            f"optimized_metric={cfg.optimized_metric} is a test metric; tune on a validation "
            f"metric (e.g. optimized_metric=val/acc) and report the test metric once"
        )
    check_accelerator(cfg.trainer)
    for metric in check_selection(cfg):
        log.warning(
            "selecting on %s reads the target's labels (its validation split): the pick is an oracle's, "
            "not unsupervised domain adaptation",
            metric,
        )
    output_dir = Path(cfg.paths.output_dir)
    flat = flat_config(cfg)
    continued = run_to_continue(cfg.get("ckpt_path"), output_dir, flat)
    if continued is not None and continued.resolve() != output_dir.resolve():
        log.info("continuing the run in %s", continued)  # one run stays one run
        OmegaConf.update(cfg, "paths.output_dir", str(continued))
        output_dir = continued  # its run.json has this config's digest: how it was found
    claim_output_dir(output_dir, flat)
    done = finished_run(output_dir)
    if done is None:
        (output_dir / FAILED_FILE).unlink(missing_ok=True)  # a retry of a failed job
    return output_dir, done


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """A GPU trainer on a machine without one fails here, in one line, not in Lightning."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but this machine has no GPU; run on the CPU with "
            f"trainer=cpu (or trainer.accelerator=cpu)"
        )


@dataclass
class Run:
    """What a run is built of."""

    datamodule: ClassificationDataModule
    model: ClassificationModule
    trainer: L.Trainer
    loggers: list[Logger]
    contract: RunContract


def build(
    cfg: DictConfig, extra_callbacks: list[Callback] | None = None, resumed: ResumePoint | None = None
) -> Run:
    """The data, the model (net + method), the loggers, callbacks and trainer of ``cfg``; a run
    that resumes from ``resumed`` is checked against the checkpoint's contract first, and its
    TensorBoard events from the checkpoint's step on are replaced by the resumed run's."""
    datamodule: ClassificationDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # the net's head needs the class count
    model = build_model(cfg, datamodule)
    if resumed is not None and resumed.contract is not None:
        check_handed(resumed.contract, model.contract, "resume", f"ckpt_path={resumed.path}")
    check_monitored(cfg, model.validation_metric_names(datamodule.evaluation_routes("val")))
    initialize = getattr(model.net, "initialize_from_data", None)
    if initialize is not None:  # a resumed run's checkpoint then overwrites what it set
        initialize(datamodule.clean_sample(DATA_INIT_IMAGES))
    if cfg.get("channels_last"):
        model.to(memory_format=torch.channels_last)  # faster convolutions on GPUs
        datamodule.use_channels_last()
    if cfg.get("compile"):
        model.net.compile()  # in place: parameter names and checkpoints stay as they are

    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        if resumed is not None and isinstance(logger, TensorBoardLogger):
            logger.purge_from(resumed.global_step)
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"),
        with_logger=bool(loggers),
        with_progress_bar=cfg.trainer.get("enable_progress_bar", True),
    )
    callbacks += extra_callbacks or []
    feature_space = hydra.utils.instantiate(cfg.feature_space) if cfg.get("feature_space") else None
    if feature_space is not None and feature_space.applies(datamodule):
        callbacks.append(feature_space)
    plugins = [] if cfg.trainer.get("plugins") else [AtomicCheckpointIO()]
    # Lightning wraps every hook call in its profiler's context, even one that records nothing
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins or None, **profiler
    )
    per_device_batch_size(datamodule.batch_size, trainer.world_size)  # fail before any work
    if trainer.world_size > 1:  # a callback costs a call at every hook of every step: only where it acts
        trainer.callbacks.append(GlooShutdown())
    for logger in loggers:
        logger.log_hyperparams(to_plain(cfg))
    return Run(datamodule, model, trainer, loggers, model.contract)


def check_monitored(cfg: DictConfig, logged: set[str]) -> None:
    """Refuse, before training, a checkpoint monitor or ``optimized_metric`` that names a
    validation metric the run never logs (``logged``), listing those it does."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    watched = {
        "callbacks.model_checkpoint.monitor": checkpoint.get("monitor"),
        "optimized_metric": cfg.get("optimized_metric"),
    }
    for key, metric in watched.items():
        if metric and str(metric).startswith("val/") and metric not in logged:
            raise ConfigError(
                f"{key}={metric} is not a metric this run logs; its validation metrics: "
                f"{', '.join(sorted(logged))}"
            )


def build_model(cfg: DictConfig, datamodule: ClassificationDataModule) -> ClassificationModule:
    """The net of ``cfg`` sized for ``datamodule`` (set up), inside the method, which receives the
    run's contract."""
    net = hydra.utils.instantiate(cfg.net, num_classes=datamodule.num_classes)
    contract = RunContract(
        net=to_plain(cfg.net),
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        data=to_plain(cfg.data),
        method=cfg.method._target_,
        label=run_label(cfg.get("task_name", "train"), cfg.paths.output_dir),
        inputs=datamodule.input_spec(),
    )
    return hydra.utils.instantiate(cfg.method, _partial_=True)(net=net, contract=contract)


def fit_and_test(cfg: DictConfig, run: Run, ckpt_path: str | None) -> dict[str, Any]:
    """Fit (from ``ckpt_path`` when resuming), test the best checkpoint; the run's summary."""
    trainer, model = run.trainer, run.model
    try:
        trainer.fit(model, datamodule=run.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except MisconfigurationException as err:  # a monitor of a training metric the run never logs
        found = re.search(
            r"monitor='([^']+)'\)` could not find the monitored key in the returned metrics: (.*)\. HINT",
            str(err),
        )
        if found is None:
            raise
        raise ConfigError(
            f"callbacks.model_checkpoint.monitor={found.group(1)} is not a metric this run logs; "
            f"the ones it logs: {found.group(2)}"
        ) from None
    save_final_last_checkpoint(trainer)
    metrics = scalar_metrics(trainer.callback_metrics)
    validated = any(key.startswith("val/") for key in metrics)
    if not validated:
        log.warning(
            "no validation ran (trainer.check_val_every_n_epoch=%s, max_epochs=%s): no best "
            "checkpoint; the test uses the final weights",
            cfg.trainer.get("check_val_every_n_epoch"),
            cfg.trainer.get("max_epochs"),
        )
    best = best_checkpoint(trainer)
    if cfg.get("test"):
        tested = best.get("ckpt_path")  # the best epoch, not the last one
        trainer.test(
            model,
            datamodule=run.datamodule,
            ckpt_path=tested,
            weights_only=True,
            verbose=cfg.get("verbose", True),
        )
        metrics |= scalar_metrics(trainer.callback_metrics)
        best["tested_ckpt"] = tested or "final weights"
    return {
        "final": metrics,
        "best": best,
        "validated": validated,
        "test_class_acc": model.class_accuracy,
        "notes": model.notes,
        "reports": model.reports,
        # a comparison's control: the method's transfer term is off (None: it has none)
        "control": model.transfer_term_off,
        **training_progress(trainer, best.get("last_ckpt_path")),
    }


def record(output_dir: Path, flat: dict[str, Any], run: Run, summary: dict[str, Any]) -> None:
    """TensorBoard's HParams row (``flat``: the run's config), the best checkpoint's manifest, and
    ``metrics.json`` (last: the marker of a finished run)."""
    metrics, best = summary["final"], summary["best"]
    if not run.trainer.is_global_zero:
        return
    log_final_hparams(run.loggers, flat, metrics, best, summary["global_step"])
    close_loggers(run.loggers)
    if best.get("ckpt_path"):
        write_manifest(best["ckpt_path"], run.contract, metrics)
    write_json_atomic(output_dir / "metrics.json", summary)
    log.info("metrics: %s", {k: metrics[k] for k in sorted(metrics) if "/acc" in k})
    log.info("run directory: %s", output_dir)


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
    # a failed job returns None, which the Optuna sweeper records as a failed trial and goes on
    # (a NaN would end the study); the basic sweeper ignores the value
    return None if outcome.failed else optimized_value(cfg, summary)


def main() -> None:
    preflight("train", sys.argv[1:])
    sys.argv[1:] = continue_in_place(sys.argv[1:])  # a resumed run writes where it started
    hydra_main()


if __name__ == "__main__":
    main()
