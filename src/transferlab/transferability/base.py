"""The transferability scores' slot: a score reads what a candidate source gives on the target's
training images (``reads``: its features (N, D), or its softmax predictions over its own source
classes (N, C_s)) and the target labels (N,), and returns one number, higher is better.

Members are named by ``conf/score/<name>.yaml``; ``load_scores`` builds them from there, so a
score added in the package or outside it (``hydra.searchpath``) is ranked with no list edited.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from transferlab.utils.errors import ConfigError

FEATURES = "features"
PREDICTIONS = "predictions"


class TransferabilityScore:
    """Base of a score: ``reads`` one of ``FEATURES``, ``PREDICTIONS``; ``score(x, labels)``."""

    reads = FEATURES

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, labels: np.ndarray) -> float:
        return float(self.score(x, labels))

    def __repr__(self) -> str:
        return type(self).__name__


def load_scores(names: Sequence[str] | str | None, key: str) -> dict[str, TransferabilityScore]:
    """The scores ``names`` names (``all`` or None: every member of ``conf/score/``; an empty
    list: none), built from their YAML; a name that is not a member is refused in one line."""
    import hydra

    from transferlab.utils.families import group_options, option_config

    options = group_options("score")
    chosen = options if names is None or names == "all" else [str(n) for n in names]
    unknown = [n for n in chosen if n not in options]
    if unknown:
        raise ConfigError(
            f"{key}: unknown score(s) {unknown}; the scores (conf/score/): {', '.join(options)}"
        )
    return {name: hydra.utils.instantiate(option_config("score", name)) for name in chosen}
