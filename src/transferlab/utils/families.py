"""The seven families a user extends, and their members read from the config groups.

A family is a base class, a folder with one file per member and a config group with one YAML per
member (``docs/extending.md``). Nothing keeps a list of members: ``group_options`` reads the
group's folders on the config search path (the project's ``conf/`` and every ``file://`` folder
of ``hydra.searchpath``), and ``${members:<group>}`` in a config is every member's config by name,
so a YAML dropped into a group (in the package or outside it) joins every list at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from transferlab.utils.errors import ConfigError


@dataclass(frozen=True)
class Family:
    name: str
    base: str  # the class every member subclasses
    folder: str  # where the package's members live, one file each
    group: str  # the config group, one YAML per member
    key: str = "_target_"  # where a member's YAML names its class


FAMILIES = (
    Family(
        "adaptation method",
        "transferlab.methods.adaptation.base.DomainAdaptationModule",
        "src/transferlab/methods/adaptation/",
        "method",
    ),
    Family(
        "fine-tuning regularizer",
        "transferlab.losses.regularizers.base.Regularizer",
        "src/transferlab/losses/regularizers/",
        "method/regularizer",
    ),
    Family(
        "distillation loss",
        "transferlab.losses.distillation.base.DistillationLoss",
        "src/transferlab/losses/distillation/",
        "method/distill_loss",
    ),
    Family(
        "test-time adaptation",
        "transferlab.tta.base.TestTimeAdaptation",
        "src/transferlab/tta/",
        "tta",
        key="adaptation._target_",  # the member, inside the module that runs it
    ),
    Family(
        "validator",
        "transferlab.validators.base.Validator",
        "src/transferlab/validators/",
        "method/validator",
    ),
    Family(
        "parameter-efficient fine-tuning",
        "transferlab.peft.base.ParameterEfficient",
        "src/transferlab/peft/",
        "method/peft",
    ),
    Family(
        "transferability score",
        "transferlab.transferability.base.TransferabilityScore",
        "src/transferlab/transferability/",
        "score",
    ),
)


def search_dirs() -> list[Path]:
    """The config folders Hydra searches: every ``file://`` entry of ``hydra.searchpath`` (while a
    Hydra job runs), then the project's ``conf/``."""
    from hydra.core.hydra_config import HydraConfig

    from transferlab.utils.config import project_root

    dirs = []
    if HydraConfig.initialized():
        for entry in HydraConfig.get().searchpath or []:
            if str(entry).startswith("file://"):
                dirs.append(Path(str(entry)[len("file://") :]))
    return [*dirs, Path(project_root()) / "conf"]


def group_options(group: str) -> list[str]:
    """The options of config group ``group`` (``_``-prefixed bases left out), sorted."""
    names = {p.stem for d in search_dirs() for p in (d / group).glob("*.yaml") if not p.stem.startswith("_")}
    return sorted(names)


def option_config(group: str, name: str) -> DictConfig:
    """The YAML of option ``name`` of ``group``, as written (the first one on the search path)."""
    for folder in search_dirs():
        path = folder / group / f"{name}.yaml"
        if path.is_file():
            return OmegaConf.load(path)  # type: ignore[return-value]
    raise ConfigError(f"{name} is not an option of {group}; the options: {', '.join(group_options(group))}")


def members(group: str, *names: Any) -> DictConfig:
    """``${members:method/validator}``: every option of ``group`` by name, each its config;
    ``${members:method/validator,entropy,dev}``: only those named."""
    chosen = [str(n) for n in names] or group_options(group)
    return OmegaConf.create({name: option_config(group, name) for name in chosen})


def members_of(family: Family) -> list[str]:
    """The members of ``family``: its group's options whose ``_target_`` (followed through the
    group's own ``defaults``) is a subclass of its base. A group shared with other families (the
    adaptation methods live in ``method/`` beside fine-tuning and distillation) is filtered so."""
    import hydra

    base = hydra.utils.get_class(family.base)
    found = []
    for name in group_options(family.group):
        target = target_of(family.group, name, family.key)
        if target is None:
            continue
        try:
            cls = hydra.utils.get_class(target)
        except Exception:  # a member the current path cannot import is not listed
            continue
        if isinstance(cls, type) and issubclass(cls, base):
            found.append(name)
    return found


def target_of(group: str, name: str, key: str = "_target_", depth: int = 0) -> str | None:
    """The class option ``name`` of ``group`` names at ``key``, followed through its own defaults."""
    node = option_config(group, name)
    found = OmegaConf.select(node, key, default=None)
    if found is not None:
        return str(found)
    for entry in node.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and depth < 5:
            return target_of(group, entry, key, depth + 1)
    return None


def family(group: str) -> Family:
    """The family whose config group is ``group``."""
    return next(f for f in FAMILIES if f.group == group)


def listed(group: str, exclude: tuple[str, ...] = ()) -> str:
    """The members of ``group``'s family as an error message lists them: ``a, b, c``."""
    return ", ".join(m for m in members_of(family(group)) if m not in exclude)
