"""LightningModules: the classification base and a base per family. A method is named by its
file (``_target_: transferlab.methods.<family>.<file>.<Class>``), so adding one edits no list."""

from transferlab.methods.adaptation.base import AdversarialAdaptationModule, DomainAdaptationModule
from transferlab.methods.base import ClassificationModule

__all__ = ["AdversarialAdaptationModule", "ClassificationModule", "DomainAdaptationModule"]
