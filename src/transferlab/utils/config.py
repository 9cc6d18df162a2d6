"""OmegaConf resolvers and Hydra instantiation helpers shared by the entry points."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict


def project_root() -> str:
    """The checkout holding ``conf/`` (editable install), else the working directory."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / "train.yaml").is_file():
            return str(parent)
    return os.getcwd()


def run_uid() -> str:
    """A short random id, so two runs started in the same second get different directories."""
    return f"{os.getpid():x}{secrets.token_hex(2)}"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root, use_cache=True)
    if not OmegaConf.has_resolver("run_uid"):
        # cached: every read of hydra.run.dir within one process gives the same directory
        OmegaConf.register_new_resolver("run_uid", run_uid, use_cache=True)


def compose_config(overrides: list[str], output_dir: str | Path, config_name: str = "train") -> DictConfig:
    """Compose the project's configs outside the command line (tests, notebooks, scripts).

    ``paths.output_dir`` normally comes from Hydra's run directory; here it is ``output_dir``.
    """
    register_resolvers()
    conf_dir = Path(project_root()) / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


def instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group given as a dict of ``_target_`` configs."""
    if not group:
        return []
    return [hydra.utils.instantiate(conf) for conf in group.values() if conf and "_target_" in conf]


def instantiate_callbacks(cfg: DictConfig | None, with_logger: bool = True) -> list[Callback]:
    """The configured callbacks; a learning-rate monitor needs a logger and is dropped without."""
    callbacks = instantiate_dict(cfg)
    if not with_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return instantiate_dict(cfg)


def to_plain(cfg: DictConfig | None) -> dict[str, Any]:
    """A resolved, plain-Python copy of a config node (safe to store in a checkpoint)."""
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
