"""Transferability scores: how well a source's features (or predictions) suit a target task,
computed without fine-tuning, one module each."""

from collections.abc import Sequence

from transferlab.transferability.hscore import h_score
from transferlab.transferability.leep import leep
from transferlab.transferability.logme import logme
from transferlab.transferability.nce import nce
from transferlab.transferability.transrate import transrate
from transferlab.utils.errors import ConfigError

SCORES = {"logme": logme, "leep": leep, "nce": nce, "hscore": h_score, "transrate": transrate}
#: what each score reads: the source's features, or its predictions over the source classes
READS = {
    "logme": "features",
    "leep": "probabilities",
    "nce": "probabilities",
    "hscore": "features",
    "transrate": "features",
}


def check_scores(names: Sequence[str] | None, key: str) -> list[str]:
    """``names`` as a list, refusing in one line a name that is not a score."""
    names = list(names or [])
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ConfigError(f"{key}: unknown score(s) {unknown}; the scores are {', '.join(SCORES)}")
    return names


__all__ = ["READS", "SCORES", "check_scores", "h_score", "leep", "logme", "nce", "transrate"]
