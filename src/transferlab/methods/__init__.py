"""LightningModules: the shared classifier base and one module per method."""

from transferlab.methods.base import ClassificationModule
from transferlab.methods.finetune import FinetuneModule
from transferlab.methods.source import SourceModule

__all__ = ["ClassificationModule", "FinetuneModule", "SourceModule"]
