"""The domain-adaptation family: ``DomainAdaptationModule`` (CE on the source + λ·A) and its
adversarial variant; one file per method (its ``alignment_loss``), one YAML per method in
``conf/method/`` whose ``defaults`` start from ``source_only``."""

from transferlab.methods.adaptation.base import AdversarialAdaptationModule, DomainAdaptationModule

__all__ = ["AdversarialAdaptationModule", "DomainAdaptationModule"]
