"""LightningModules: the shared classifier base and one module per method."""

from transferlab.methods.adaptation import (
    AdversarialAdaptationModule,
    DomainAdaptationModule,
    SourceOnlyModule,
)
from transferlab.methods.base import ClassificationModule
from transferlab.methods.cdan import CDANModule
from transferlab.methods.coral import CORALModule
from transferlab.methods.dan import DANModule
from transferlab.methods.dann import DANNModule
from transferlab.methods.distill import DistillModule
from transferlab.methods.finetune import FinetuneModule
from transferlab.methods.jan import JANModule
from transferlab.methods.mcc import MCCModule
from transferlab.methods.mdd import MDDModule
from transferlab.methods.supervised import SupervisedModule
from transferlab.methods.tta import TestTimeModule

__all__ = [
    "AdversarialAdaptationModule",
    "CDANModule",
    "CORALModule",
    "ClassificationModule",
    "DANModule",
    "DANNModule",
    "DistillModule",
    "DomainAdaptationModule",
    "FinetuneModule",
    "JANModule",
    "MCCModule",
    "MDDModule",
    "SourceOnlyModule",
    "SupervisedModule",
    "TestTimeModule",
]
