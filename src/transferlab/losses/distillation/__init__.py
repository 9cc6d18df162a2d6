"""The distillation slot's members, one file each (RepDistiller's ``distiller_zoo`` layout); the
slot's contract in ``base.py``. ``conf/method/distill_loss/<name>.yaml`` names a member's file."""

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss, LayerPairLoss

__all__ = ["DistillationInputs", "DistillationLoss", "LayerPairLoss"]
