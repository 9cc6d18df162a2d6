"""Engineering a run is handed through the config's ``callbacks`` group (research stays in the
LightningModules)."""

from transferlab.callbacks.lookahead import Lookahead

__all__ = ["Lookahead"]
