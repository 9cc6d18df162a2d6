"""What both entry points do around the work: seeding, quiet logs, one-line user errors."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from transferlab.utils.errors import TransferlabError

log = logging.getLogger("transferlab")


def silence_known_warnings() -> None:
    """Warnings that are expected in this template and say nothing actionable to its users."""
    for pattern in (
        ".*does not have many workers.*",  # num_workers=0 is deliberate for in-memory data
        ".*The number of training batches.*smaller than the logging interval.*",
        ".*Checkpoint directory .* exists and is not empty.*",  # resuming into the same run
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",  # inside Lightning, not ours
    ):
        warnings.filterwarnings("ignore", message=pattern)
    # an advertisement for a cloud service, printed by every run that saves checkpoints
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡")
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a ``TransferlabError`` into ``error: <message>`` on stderr and exit status 1."""
    try:
        yield
    except TransferlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
