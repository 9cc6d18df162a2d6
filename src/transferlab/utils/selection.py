"""Model selection's config side: the checkpoint monitor a ``select`` names, the check that a run
can compute it, and the names of the per-epoch records (``selection.jsonl``) the report reads
(``report/selection.py``)."""

from __future__ import annotations

from typing import Any

SELECTION_FILE = "selection.jsonl"
ORACLE = "oracle"
TEST_KEY = "target_test_acc"
VALIDATOR_PREFIX = "val/validator/"
# metrics computed with the target's labels (its validation split): selecting on them is not UDA
TARGET_LABEL_METRICS = ("val/target_acc", "val/target_acc_top5", "val/target_loss")


def selection_metric(select: Any = None) -> str:
    """The checkpoint monitor of ``select``: ``val/validator/<select>``; without one ``val/acc``."""
    return "val/acc" if select in (None, "", "null") else f"{VALIDATOR_PREFIX}{select}"


def check_selection(cfg: Any) -> list[str]:
    """Refuse a ``select`` the run cannot compute, in one line; return the metrics the run selects
    or tunes on that read the target's labels (the caller says so)."""
    import hydra

    from transferlab.utils.errors import ConfigError
    from transferlab.utils.families import listed

    select = cfg.get("select")
    method = cfg.get("method") or {}
    validators = dict(method.get("validators") or {})
    if select is not None:
        if not validators:
            raise ConfigError(
                f"select={select} picks the checkpoint by a validator, and only the domain-adaptation "
                f"methods compute validators (method={listed('method')}); a "
                f"single-domain run selects on val/acc: drop select"
            )
        if select not in validators:
            raise ConfigError(
                f"select={select} is not a validator of this run; the known ones: {', '.join(validators)}"
            )
    readers = {
        f"{VALIDATOR_PREFIX}{name}"
        for name, node in validators.items()
        if getattr(hydra.utils.get_class(node["_target_"]), "uses_target_labels", False)
    }
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    watched = [checkpoint.get("monitor"), cfg.get("optimized_metric")]
    return sorted({m for m in watched if m and (m in readers or m in TARGET_LABEL_METRICS)})
