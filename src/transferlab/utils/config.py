"""OmegaConf resolvers and Hydra instantiation helpers shared by the entry points."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.utils.errors import ConfigError


def project_root() -> str:
    """The checkout holding ``conf/`` (editable install), else the working directory."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / "train.yaml").is_file():
            return str(parent)
    return os.getcwd()


def run_uid() -> str:
    """A short random id, so two runs started in the same second get different directories."""
    return f"{os.getpid():x}{secrets.token_hex(2)}"


def sweep_name(_fixed: str = "") -> str:
    """A sweep directory name fixed by the command line's overrides (sorted): the same ``-m``
    command finds the same directory again. Readable start, then a hash of the whole list.

    Read from ``sys.argv`` once, in the process that launches the sweep (the resolver is cached
    and Hydra copies the cache into every job's config); how the jobs run (``launcher``,
    ``hydra.*``) is not part of the name. The argument is ``${fixed_overrides:}``, unused: naming
    it in the sweep directory resolves (and caches) it in the launching process too, so jobs that
    run elsewhere (Slurm) name their directories from the same command line.
    """
    items = sorted(
        arg
        for arg in sys.argv[1:]
        if "=" in arg and not arg.startswith("-") and not arg.lstrip("+~").startswith(("hydra", "launcher="))
    )
    readable = ",".join(items).replace("/", "-").replace(" ", "")[:60] or "defaults"
    digest = hashlib.sha256("\n".join(items).encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def fixed_overrides() -> str:
    """The keys the command line sets to one value or deletes (``|``-joined): what every job of
    the sweep shares. Read from ``sys.argv`` once, in the process that launches the sweep (cached);
    Hydra's own parser tells a sweep (``0,0.1``, ``range(…)``, ``glob(…)``) from one value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    keys = []
    for arg in sys.argv[1:]:
        if arg.startswith("-") or ("=" not in arg and not arg.startswith("~")):
            continue  # a flag, not an override
        try:
            override = parser.parse_override(arg)
        except Exception:  # Hydra itself reports a malformed override
            continue
        if override.is_delete() or not override.is_sweep_override():
            keys.append(override.key_or_group)
    return "|".join(sorted(keys))


def job_name(number: Any, task_overrides: Any, fixed: str = "") -> str:
    """A sweep job's directory: its number, then the values that set it apart, e.g.
    ``3_lam=0.1,seed=1`` for ``-m method.lam=0,0.1 seed=0,1`` (a key by its last part where that
    is unambiguous). The same command gives the same names: a relaunch finds its jobs."""
    shared = set(fixed.split("|")) if fixed else set()
    items = []
    for override in task_overrides or []:
        key, _, value = str(override).partition("=")
        key = key.lstrip("+~")
        if key not in shared and not key.startswith("hydra."):
            items.append((key, value))
    short = [key.rsplit(".", 1)[-1] for key, _ in items]
    parts = [
        f"{name if short.count(name) == 1 else key}={value}"
        for name, (key, value) in zip(short, items, strict=True)
    ]
    label = ",".join(parts).replace("/", "-").replace(" ", "")[:80]
    return f"{number}_{label}" if label else str(number)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root, use_cache=True)
    if not OmegaConf.has_resolver("run_uid"):
        # cached: every read of hydra.run.dir within one process gives the same directory
        OmegaConf.register_new_resolver("run_uid", run_uid, use_cache=True)
    if not OmegaConf.has_resolver("sweep_name"):
        OmegaConf.register_new_resolver("sweep_name", sweep_name, use_cache=True)
    if not OmegaConf.has_resolver("fixed_overrides"):
        OmegaConf.register_new_resolver("fixed_overrides", fixed_overrides, use_cache=True)
    if not OmegaConf.has_resolver("job_name"):
        OmegaConf.register_new_resolver("job_name", job_name)
    if not OmegaConf.has_resolver("basename"):
        OmegaConf.register_new_resolver("basename", lambda path: Path(str(path)).name)
    if not OmegaConf.has_resolver("stats"):
        OmegaConf.register_new_resolver("stats", dataset_stats)
    if not OmegaConf.has_resolver("members"):
        from transferlab.utils.families import members

        OmegaConf.register_new_resolver("members", members)
    if not OmegaConf.has_resolver("selection_metric"):
        from transferlab.utils.selection import selection_metric

        OmegaConf.register_new_resolver("selection_metric", selection_metric)


# the datamodules whose normalisation other data borrows (a target fed as its source was)
STATS_OF = {
    "cifar10": "transferlab.data.CIFAR10DataModule",
    "cifar100": "transferlab.data.CIFAR100DataModule",
    "mnist": "transferlab.data.MNISTDataModule",
    "usps": "transferlab.data.USPSDataModule",
    "stl10": "transferlab.data.STL10DataModule",
    "imagenet": "transferlab.data.DomainBenchmarkDataModule",  # the benchmarks' backbones' inputs
}


def dataset_stats(which: str) -> list[float]:
    """``${stats:cifar10.mean}``: a dataset's normalisation as its datamodule defines it (one
    place for those numbers; a config that feeds other images as a CIFAR-10 net saw them names
    them instead of copying them)."""
    name, _, kind = str(which).partition(".")
    if name not in STATS_OF or kind not in ("mean", "std"):
        raise ConfigError(
            f"${{stats:{which}}}: use ${{stats:<dataset>.mean}} or .std, dataset one of {', '.join(STATS_OF)}"
        )
    datamodule = hydra.utils.get_class(STATS_OF[name])
    return [float(v) for v in getattr(datamodule, f"default_{kind}")]


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


def apply_protocol(cfg: DictConfig, given: Iterable[str] = ()) -> None:
    """Merge ``protocol.method_settings[<class>]`` into ``cfg.method`` when ``method._target_`` is
    that class, and into each ``cfg.method.losses.<name>`` whose ``_target_`` is: a paper's protocol
    (``conf/protocol/``) sets its authors' own methods the way their code does and leaves the others
    as they are, and an experiment sets a loss the way its authors tuned it for that pair of nets
    (DKD's β). A key in ``given`` (the command line's, e.g. ``method.warmup``) keeps the value given
    there. Done once, before the config is checked, so the run's recorded config and digest show
    what ran."""
    settings = OmegaConf.select(cfg, "protocol.method_settings", default=None)
    if not settings:
        return
    given = {key.lstrip("+~") for key in given}

    def merge_into(prefix: str) -> None:
        node = OmegaConf.select(cfg, prefix)
        target = node.get("_target_") if isinstance(node, DictConfig) else None
        chosen = settings.get(str(target).rsplit(".", 1)[-1]) if target else None
        if not chosen:
            return
        flat = flatten(OmegaConf.to_container(chosen, resolve=False), prefix)
        for key, value in flat.items():
            if key not in given:
                OmegaConf.update(cfg, key, value, merge=True, force_add=True)

    with open_dict(cfg):
        if cfg.get("method") is not None:
            merge_into("method")
        for name in list(OmegaConf.select(cfg, "method.losses", default=None) or {}):
            merge_into(f"method.losses.{name}")


def flatten(tree: Any, prefix: str) -> dict[str, Any]:
    """{dotted key under ``prefix``: leaf} of a nested dict."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for name, sub in tree.items() for k, v in flatten(sub, f"{prefix}.{name}").items()}


def instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group given as a dict of ``_target_`` configs."""
    if not group:
        return []
    return [hydra.utils.instantiate(conf) for conf in group.values() if conf and "_target_" in conf]


def instantiate_callbacks(
    cfg: DictConfig | None, with_logger: bool = True, with_progress_bar: bool = True
) -> list[Callback]:
    """The configured callbacks; a learning-rate monitor needs a logger and is dropped without
    one, and a progress bar is dropped when the trainer has ``enable_progress_bar=false``."""
    callbacks = instantiate_dict(cfg)
    if not with_logger:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not with_progress_bar:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """The configured loggers; one that cannot write its store or is not installed is a
    ``ConfigError`` naming ``logger.<name>`` and the fix."""
    loggers = []
    for name, conf in (cfg or {}).items():
        if not conf or "_target_" not in conf:
            continue
        try:
            loggers.append(hydra.utils.instantiate(conf))
        except Exception as err:
            cause = err.__cause__ or err
            if isinstance(cause, ImportError):
                raise ConfigError(
                    f"logger.{name} needs a package that is not installed ({cause}); install it or "
                    f"pick another logger (logger=tensorboard, csv, none)"
                ) from None
            if isinstance(cause, OSError):
                raise ConfigError(
                    f"logger.{name} cannot write where it logs ({type(cause).__name__}: {cause}); "
                    f"point paths.log_dir (or the logger's own location) at a writable folder"
                ) from None
            raise
    return loggers


def to_plain(cfg: DictConfig | None) -> dict[str, Any]:
    """A resolved, plain-Python copy of a config node (safe to store in a checkpoint)."""
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


# what says where and how visibly a run writes, not what it computes: left out of the digests
NOT_IN_DIGEST = {"ckpt_path", "paths", "callbacks", "logger", "hydra"}
# caches anywhere in the config (data.decode_dir, method.cache_dir): where results are kept, not what
CACHE_KEYS_NOT_IN_DIGEST = {"decode_dir", "cache_dir"}
TRAINER_NOT_IN_DIGEST = {
    "default_root_dir",
    "enable_progress_bar",
    "enable_model_summary",
    "log_every_n_steps",
}


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as ``{dotted.key: value}``, without what only says where and how
    visibly a run writes (``NOT_IN_DIGEST``, ``TRAINER_NOT_IN_DIGEST``, caches, values inside its
    own output directory), so a relaunch into another directory has the same digest."""
    plain = {k: v for k, v in to_plain(cfg).items() if k not in NOT_IN_DIGEST}
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(plain, "")
    output_dir = str(cfg.paths.output_dir) if cfg.get("paths") else None
    return {
        k: v
        for k, v in flat.items()
        if not (output_dir and str(v).startswith(output_dir))
        and not (k.startswith("trainer.") and k.split(".", 1)[1] in TRAINER_NOT_IN_DIGEST)
        and k.rsplit(".", 1)[-1] not in CACHE_KEYS_NOT_IN_DIGEST
    }


def config_digest(flat: dict[str, Any], length: int = 16) -> str:
    """A short sha256 of a flat config (``flat_config``): the identity of a run's recipe."""
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:length]
