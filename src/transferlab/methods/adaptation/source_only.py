"""Source only: the adaptation family's baseline, no alignment term."""

from __future__ import annotations

from typing import Any

from transferlab.methods.adaptation.base import DomainAdaptationModule
from transferlab.utils.errors import ConfigError
from transferlab.utils.families import listed


class SourceOnlyModule(DomainAdaptationModule):
    """No alignment: CE on the source labels (+ λ_t·CE on labelled target images, the article's
    joint training). The baseline every adaptation method must beat. The unlabelled target
    images are not used at all."""

    uses_unlabelled_target = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "lam" in kwargs:
            raise ConfigError(
                f"method=source_only has no alignment term for method.lam to weigh; drop it, "
                f"or pick an adaptation method (method={listed('method', exclude=('source_only',))})"
            )
        super().__init__(*args, lam=0.0, **kwargs)
