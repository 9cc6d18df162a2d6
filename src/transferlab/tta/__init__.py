"""The test-time adaptation family: what a source model adapts on each unlabelled test batch and
the objective it lowers there (``base.py``), one file per member, one YAML per member in
``conf/tta/``; ``methods/tta.py`` runs any of them over the test stream."""

from transferlab.tta.base import TestTimeAdaptation, batchnorm_layers, normalise_with_batch_statistics

__all__ = ["TestTimeAdaptation", "batchnorm_layers", "normalise_with_batch_statistics"]
