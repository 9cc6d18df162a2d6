"""Fine-tuning regularizers R: min L_t(θ_t) + λ·R. λ is applied by the method.

Each regularizer is a slot member (``losses/slot.py``): it sees a ``RegularizerInputs`` and
declares in ``needs`` which of its optional parts it reads, so the method computes only those:

- ``SOURCE_WEIGHTS``: θ_s, the source backbone's parameters (L2-SP);
- ``FEATURES``: the batch's features from the fine-tuned net, (N, D) (BSS);
- ``FEATURE_MAPS``: the feature maps at the backbone layers named in ``layers`` of the fine-tuned
  net and of the frozen source backbone, on the same batch (DELTA).

The backbone and head parameters are always there. α (``backbone_weight``) and β (``head_weight``)
are Li et al.'s names for the weights of the parameter penalties. A regularizer that must measure
something before training (DELTA's channel attention) does it in ``setup``.

One file per regularizer; ``conf/method/regularizer/<name>.yaml`` names it.
"""

from transferlab.losses.regularizers.base import ParameterRegularizer, Regularizer, RegularizerInputs

__all__ = ["ParameterRegularizer", "Regularizer", "RegularizerInputs"]
