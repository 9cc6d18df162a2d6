"""Transferability scores: how well a source's features (or predictions) suit a target task,
computed without fine-tuning; the slot's contract in ``base.py``, one file per score, one YAML
per score in ``conf/score/``."""

from transferlab.transferability.base import FEATURES, PREDICTIONS, TransferabilityScore, load_scores

__all__ = ["FEATURES", "PREDICTIONS", "TransferabilityScore", "load_scores"]
