"""The pretraining stage of a transfer pipeline: train a model once, reuse it everywhere.

An experiment with a ``pretrain`` node (``pretrain: cifar10`` in its defaults) trains that recipe
(a source model, or a teacher) before the target stage and passes its best checkpoint to the key
named by the node's ``pass_to`` (``method.source_ckpt`` for fine-tuning, ``method.teacher_ckpt``
for distillation). The checkpoint is cached under a hash of the recipe, so a sweep over target
settings or seeds pretrains once; a file lock keeps concurrent sweep jobs from training it twice.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.utils.config import config_digest, flat_config
from transferlab.utils.errors import CheckpointError
from transferlab.utils.log import log

RECIPE = ("data", "net", "method", "trainer", "seed")  # what determines the pretrained model


def has_pretraining_stage(cfg: DictConfig) -> bool:
    """Whether ``cfg`` is a pipeline. A ``pretrain`` node without a recipe (``method``) is what
    ``++pretrain.trainer.max_epochs=5`` leaves in an experiment that has no pretraining stage, in a
    sweep over experiments: it is set aside, with a log line."""
    stage = cfg.get("pretrain")
    if not stage:
        return False
    if stage.get("method") is None:
        log.info(
            "no pretraining stage in this experiment: pretrain.%s ignored",
            ", pretrain.".join(map(str, stage)),
        )
        return False
    return True


def pretraining_config(cfg: DictConfig) -> DictConfig:
    """The config of the pretraining run: the target's config with the ``pretrain`` node's parts."""
    stage = cfg.pretrain
    stage_cfg = copy.deepcopy(cfg)
    with open_dict(stage_cfg):
        stage_cfg.data = copy.deepcopy(stage.data)
        stage_cfg.method = copy.deepcopy(stage.method)
        if stage.get("net"):  # a teacher may be another net than the student
            stage_cfg.net = copy.deepcopy(stage.net)
        # the stage's own trainer keys (its length) over the run's; the run's shared keys (a debug
        # preset's shortening) over both
        shared = {key: cfg.trainer[key] for key in cfg.get("shared_trainer_keys") or [] if key in cfg.trainer}
        stage_cfg.trainer = OmegaConf.merge(cfg.trainer, stage.get("trainer") or {}, shared)
        stage_cfg.seed = stage.seed
        stage_cfg.task_name = stage.task_name
        stage_cfg.ckpt_path = None
        # a stage may have its own first stage (LP-FT: the source, then the linear probe on it)
        stage_cfg.pretrain = copy.deepcopy(stage.get("pretrain"))
        # the run's checkpoint pick reads its own validators (domain adaptation): the stage picks
        # by its own (default: val/acc)
        stage_cfg.select = stage.get("select")
    return stage_cfg


def recipe_hash(stage_cfg: DictConfig) -> str:
    """A short hash of what determines the pretrained model: its data, net, method, trainer and
    seed, as the run's own digest sees them (``utils.config.flat_config``), and the recipe of the
    stage's own first stage where it has one."""
    flat = flat_config(stage_cfg)
    recipe = {k: v for k, v in flat.items() if k.split(".")[0] in RECIPE}
    if stage_cfg.get("pretrain"):  # a stage with a stage of its own: that recipe too
        recipe |= {k: v for k, v in flat.items() if k.startswith("pretrain.")}
    return config_digest(recipe, length=12)


def prepare_pretraining(cfg: DictConfig, run: Callable[[DictConfig], Any]) -> Path:
    """Train the pretraining stage with ``run`` unless its cached run is complete; return its directory."""
    stage_cfg = pretraining_config(cfg)
    cache = Path(cfg.paths.cache_dir) / "pretrain" / f"{stage_cfg.task_name}-{recipe_hash(stage_cfg)}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open_dict(stage_cfg):
        stage_cfg.paths.output_dir = str(cache)
    done = cache / "checkpoints" / "manifest.json"
    if launched_rank() > 0:
        # a DDP worker runs the same script as rank 0, which holds the lock while it trains the
        # source with this process as one of its ranks: join that training, never wait on it
        if not done.is_file():
            run(stage_cfg)
        return cache
    with FileLock(f"{cache}.lock"):
        if done.is_file():
            log.info("pretraining stage: reusing %s", cache)
            return cache
        # an interrupted training left its last.ckpt there: train() resumes from it
        log.info("pretraining stage: training %s", cache)
        run(stage_cfg)
        if not done.is_file():
            raise CheckpointError(
                f"the pretraining stage in {cache} finished without a best checkpoint (callbacks=none, "
                f"trainer.fast_dev_run or no validation?); give the pretraining stage checkpointing"
            )
    return cache


def launched_rank() -> int:
    """This process's global rank when a launcher (Lightning's DDP, torchrun, SLURM) set it."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(variable):
            return int(os.environ[variable])
    return 0
