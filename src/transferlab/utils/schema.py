"""Typed config checking: every ``_target_`` node is checked against the signature it builds.

The constructor of a method, net, datamodule, optimiser or regularizer is its config's schema:
its parameter names are the valid keys and its type hints the valid types. ``validate_config``
runs before any data is read, so ``method.lamda=0.1`` or ``method.lam=abc`` fails at once with
a message that lists the valid names, instead of minutes later or never.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from transferlab.utils.errors import ConfigError

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
_PASSED_BY_CODE = {"net", "contract", "num_classes", "callbacks", "logger"}  # not config keys
CHECKED_GROUPS = ("data", "net", "method", "trainer", "feature_space")


def validate_config(cfg: DictConfig, groups: Sequence[str] = CHECKED_GROUPS) -> None:
    """Raise ``ConfigError`` for an unknown key or a wrongly typed value under ``groups``."""
    for group in groups:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            validate_node(node, group)
    check_values(cfg, groups)


def validate_node(node: DictConfig, key: str) -> None:
    """Check one ``_target_`` node (and the ``_target_`` nodes inside it)."""
    target = node.get("_target_")
    if target is None:  # a dict of objects (a family's slot members: method.losses.kd, ...)
        for name, child in node.items():
            if isinstance(child, DictConfig):
                validate_node(child, f"{key}.{name}")
        return
    try:
        factory = hydra.utils.get_object(target)
    except Exception as err:
        raise ConfigError(f"{key}._target_={target} cannot be imported ({err}); check the name") from None
    params, open_ended = accepted_parameters(factory)
    hints = type_hints(factory)
    for name in node:
        name = str(name)
        if name in _HYDRA_KEYS:
            continue
        if name not in params:
            if open_ended:
                continue
            valid = ", ".join(sorted(params - _PASSED_BY_CODE))
            raise ConfigError(f"{key}.{name} is not an option of {target}; valid options: {valid}")
        hint = hints.get(name)
        if OmegaConf.is_missing(node, name):
            raise ConfigError(f"{key}.{name} is not set (???); pass {key}.{name}=<{describe(hint or str)}>")
        value = resolved(node, name, key)
        if isinstance(value, DictConfig):
            validate_node(value, f"{key}.{name}")
            continue
        if value is None and hint is not None and not _allows_none(hint):
            raise ConfigError(
                f"{key}.{name} is not set; {target} needs it: pass {key}.{name}=<{describe(hint)}>"
            )
        if hint is not None and not matches(value, hint):
            raise ConfigError(
                f"{key}.{name}={value!r} has the wrong type: {target} takes {describe(hint)}, "
                f"got {type(value).__name__}"
            )


def resolved(node: DictConfig, name: str, key: str) -> Any:
    """``node[name]`` with its interpolations resolved; a resolver's refusal (``${stats:…}``) as a
    ``ConfigError`` naming ``key.name``."""
    try:
        return node.get(name)
    except InterpolationResolutionError as err:
        message = re.sub(r"^\w+ raised while resolving interpolation: ", "", str(err).splitlines()[0])
        raise ConfigError(f"{key}.{name}: {message}") from None


def accepted_parameters(factory: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword names ``factory`` accepts, following ``**kwargs`` up a class's bases.

    Returns (names, open_ended): open_ended when a ``**kwargs`` leads to code not inspected.
    """
    names: set[str] = set()
    for function in _constructors(factory):
        try:
            parameters = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return names, True
        names |= {
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        }
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names, False
    return names, True


def type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for function in reversed(_constructors(factory)):
        try:
            hints |= typing.get_type_hints(function)
        except Exception:  # hints that do not resolve (e.g. under TYPE_CHECKING) are not checked
            continue
    return hints


def _constructors(factory: Callable[..., Any]) -> list[Callable[..., Any]]:
    """A function itself; a class's own ``__init__`` and its bases', most derived first."""
    if not inspect.isclass(factory):
        return [factory]
    return [cls.__init__ for cls in factory.__mro__ if "__init__" in vars(cls) and cls is not object]


def matches(value: Any, hint: Any) -> bool:
    """Whether a config value fits a type hint (hints this cannot judge pass)."""
    if value is None:
        return hint is type(None) or _allows_none(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(hint) if arg is not type(None))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return isinstance(value, ListConfig | list | tuple)
    if origin in (dict, Mapping) or hint is dict:
        return isinstance(value, DictConfig | dict)
    if isinstance(hint, type) and isinstance(value, str | int | float):
        # a YAML scalar can only be what a class hint asks for if it is one (a path may be a str)
        return isinstance(value, hint) or (isinstance(value, str) and issubclass(hint, os.PathLike))
    return True


def _allows_none(hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# --- values: non-finite numbers and the ranges every run shares ---------------------------------
# (a key's last parts, the test a value must pass, what it must be): matched at any depth under the
# checked groups, so method.optimizer.lr and method.losses.kd.temperature are held to the same
RANGES: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("optimizer.lr", lambda v: v > 0, "> 0"),
    ("optimizer.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("temperature", lambda v: v > 0, "> 0"),
    ("data.image_size", lambda v: v >= 1, ">= 1"),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("trainer.max_epochs", lambda v: v >= 1 or v == -1, ">= 1 (or -1: no limit)"),
    ("trainer.max_steps", lambda v: v >= 1 or v == -1, ">= 1 (or -1: no limit)"),
    ("seed", lambda v: 0 <= v < 2**32, "in [0, 2**32 - 1] (NumPy's seeds)"),
)


def check_values(cfg: DictConfig, groups: Sequence[str] = CHECKED_GROUPS) -> None:
    """Refuse a NaN or infinite number anywhere under ``groups`` (and the top-level ``seed``), and
    a value out of the range ``RANGES`` gives its key, naming the key as the user types it.

    A NaN passes every ``x < 0`` check a constructor makes and only shows as a non-finite loss
    steps later; here it fails before any data is read."""
    values = {"seed": cfg.get("seed")}
    for group in groups:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            values |= _numbers(node, group)
    for key, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value} is not a finite number; pass a number (e.g. {key}=0.1)")
        for suffix, valid, expected in RANGES:
            if (key == suffix or key.endswith(f".{suffix}")) and not valid(value):
                raise ConfigError(f"{key}={value} must be {expected}")


def _numbers(node: DictConfig, key: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in node:
        if OmegaConf.is_missing(node, name):
            continue
        child = resolved(node, name, key)
        if isinstance(child, DictConfig):
            found |= _numbers(child, f"{key}.{name}")
        elif isinstance(child, ListConfig):
            found |= {f"{key}.{name}[{i}]": v for i, v in enumerate(child) if isinstance(v, int | float)}
        else:
            found[f"{key}.{name}"] = child
    return found
