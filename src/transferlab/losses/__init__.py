"""Losses, each an nn.Module whose docstring states its formula, a folder per family:
``alignment/`` (domain adaptation's A), ``regularizers/`` (fine-tuning's R), ``distillation/``
(the distillation slot), and what they share: the slot contract (``slot.py``) and the
gradient-reversal layer (``domain.py``). A member is imported from its own file."""
