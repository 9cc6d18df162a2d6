"""Learning-rate schedules of the papers' protocols (the standard ones come from torch)."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def annealed_lr_factor(progress: float, decay_rate: float = 10.0, decay_power: float = 0.75) -> float:
    """μ_p / μ_0 = 1 / (1 + a·p)^b, the learning-rate annealing of Ganin & Lempitsky (a = 10, b = 0.75)."""
    return 1.0 / (1.0 + decay_rate * progress) ** decay_power


class AnnealedLR(LRScheduler):
    """μ_p = μ_0 / (1 + a·p)^b with p = step / total_steps (step it every optimiser step);
    Ganin & Lempitsky's a = 10 (``decay_rate``), b = 0.75 (``decay_power``)."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        decay_rate: float = 10.0,
        decay_power: float = 0.75,
    ) -> None:
        self.total_steps, self.decay_rate, self.decay_power = max(total_steps, 1), decay_rate, decay_power
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        progress = min(self.last_epoch / self.total_steps, 1.0)
        factor = annealed_lr_factor(progress, self.decay_rate, self.decay_power)
        return [base_lr * factor for base_lr in self.base_lrs]
