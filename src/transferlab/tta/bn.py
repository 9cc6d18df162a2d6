"""BN adaptation (Schneider et al., 2020; TENT's "BN" baseline)."""

from __future__ import annotations

from transferlab.tta.base import TestTimeAdaptation


class BatchNormAdaptation(TestTimeAdaptation):
    """BatchNorm normalises with each test batch's own statistics instead of the source's running
    ones. Nothing is trained."""

    name = "bn"
    batch_statistics = True
    needs_batchnorm = True
