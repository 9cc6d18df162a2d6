"""Validators: scores that pick a model without target labels, one file each, and the oracle;
the slot's contract in ``base.py``, one YAML per member in ``conf/method/validator/``."""

from transferlab.validators.base import ValidationOutputs, Validator

__all__ = ["ValidationOutputs", "Validator"]
