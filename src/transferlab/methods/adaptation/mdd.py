"""MDD (Zhang et al., ICML 2019): align by the margin disparity discrepancy,

    A = −D_γ,  D_γ = γ·mean_s log p'_s[h(x_s)] + mean_t log(1 − p'_t[h(x_t)]),

p' = softmax of an adversarial head f' on the features behind a gradient reversal R_c, h the main
head's predicted class (``losses.alignment.MarginDisparityDiscrepancy``): f' ascends D_γ, the
features descend c·D_γ. The reversal warms up to ``reversal_scale`` (the reference library's 0.1)
as the authors' code has it, c_i = 0.1·(2/(1 + exp(−i/1000)) − 1) from the first iteration: in the
fraction of the run, γ = 10 over ``warmup`` = 10,000 / (their run's iterations) counted from the
run's start (``conf/method/mdd.yaml``: 0.2, their digits runs of 50,000 iterations).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from transferlab.losses.alignment.mdd import MarginDisparityDiscrepancy
from transferlab.methods.adaptation.base import AdversarialAdaptationModule


def adversarial_head(
    feature_dim: int, num_classes: int, width: int = 1024, dropout: float = 0.5
) -> nn.Sequential:
    """f': Linear(D, width) → ReLU → Dropout → Linear(width, K), the reference library's."""
    return nn.Sequential(
        nn.Linear(feature_dim, width),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(width, num_classes),
    )


class MDDModule(AdversarialAdaptationModule):
    """Args:
    margin: γ of D_γ (4).
    reversal_scale: the reversal coefficient's ceiling, c = reversal_scale·c(p) (0.1: the reference
        library's warm-start layer rises to 0.1).
    head_width, head_dropout: the adversarial head f'.
    The rest as ``AdversarialAdaptationModule``. The reference library's main head is an MLP of the
    same shape; here it is the net's linear head, as for every method.
    """

    adversary_reads_logits = True

    def __init__(
        self,
        *args: Any,
        margin: float = 4.0,
        reversal_scale: float = 0.1,
        head_width: int = 1024,
        head_dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if reversal_scale <= 0:
            raise ValueError(f"reversal_scale={reversal_scale} must be > 0")
        self.reversal_scale = reversal_scale
        head = adversarial_head(self.net.feature_dim, self.net.num_classes, head_width, head_dropout)
        self.domain_adversarial = MarginDisparityDiscrepancy(head, margin)

    def reversal_coefficient(self) -> float:
        return self.reversal_scale * super().reversal_coefficient()
