"""LightningModules: the shared classifier base and one module per method."""

from transferlab.methods.base import ClassificationModule
from transferlab.methods.dann import AnnealedLR, DANNModule
from transferlab.methods.distill import DistillModule
from transferlab.methods.finetune import FinetuneModule
from transferlab.methods.source import SourceModule

__all__ = [
    "AnnealedLR",
    "ClassificationModule",
    "DANNModule",
    "DistillModule",
    "FinetuneModule",
    "SourceModule",
]
