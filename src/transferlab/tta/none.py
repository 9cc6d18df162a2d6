"""No test-time adaptation: the source model as it is, on the data's own test routes."""

from __future__ import annotations

from transferlab.tta.base import TestTimeAdaptation


class NoAdaptation(TestTimeAdaptation):
    """Nothing adapts: plain evaluation."""
