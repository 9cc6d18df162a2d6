"""Full fine-tuning: every parameter trains (the family's identity)."""

from __future__ import annotations

from transferlab.nets.base import Classifier
from transferlab.peft.base import ParameterEfficient


class FullFineTuning(ParameterEfficient):
    """Every parameter of the backbone and the head trains; the net is left as it is."""

    full = True

    def apply(self, net: Classifier) -> None:
        return None
