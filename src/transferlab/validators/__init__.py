"""Validators: scores that pick a model without target labels, one module each, and the oracle."""

from transferlab.validators.base import ValidationOutputs, Validator
from transferlab.validators.dev import DeepEmbeddedValidation, dev_risk
from transferlab.validators.oracle import Oracle
from transferlab.validators.prediction import BatchNuclearNorm, Entropy, InformationMaximization
from transferlab.validators.snd import SoftNeighborhoodDensity
from transferlab.validators.source import SourceAccuracy, SourceLoss

__all__ = [
    "BatchNuclearNorm",
    "DeepEmbeddedValidation",
    "Entropy",
    "InformationMaximization",
    "Oracle",
    "SoftNeighborhoodDensity",
    "SourceAccuracy",
    "SourceLoss",
    "ValidationOutputs",
    "Validator",
    "dev_risk",
]
