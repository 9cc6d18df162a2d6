"""Learning-rate schedules that know the run's length, across a resume that changes it.

A checkpoint restores a scheduler's whole state, including the length it was planned for
(``T_max`` of a cosine schedule, ``total_steps`` of a one-cycle or Ganin's annealing). A resume
into a longer run would then continue from the end of the old plan (a cosine at its minimum: lr 0
for every extra epoch). ``replan`` puts the new run's plan back and sets the learning rate the new
plan gives at the current step, so the run continues as one planned for the new length would.
"""

from __future__ import annotations

import copy
from typing import Any

from torch.optim.lr_scheduler import LRScheduler, _enable_get_lr_call

#: the attributes in which a scheduler stores the run's length
LENGTH_ATTRIBUTES = ("T_max", "total_steps", "_schedule_phases")


def planned_length(scheduler: LRScheduler) -> dict[str, Any]:
    """The run-length attributes of a freshly built scheduler (empty for a length-free one)."""
    return {k: copy.deepcopy(getattr(scheduler, k)) for k in LENGTH_ATTRIBUTES if hasattr(scheduler, k)}


def replan(scheduler: LRScheduler, planned: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Restore ``planned`` into a restored ``scheduler`` whose length differs; return what changed
    (name -> (restored, planned)), empty when the plans agree."""
    changed = {k: (getattr(scheduler, k), v) for k, v in planned.items() if getattr(scheduler, k) != v}
    if not changed:
        return {}
    for name, (_, value) in changed.items():
        setattr(scheduler, name, copy.deepcopy(value))
    with _enable_get_lr_call(scheduler):
        closed_form = getattr(scheduler, "_get_closed_form_lr", None)
        rates = closed_form() if closed_form is not None else scheduler.get_lr()
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]
    return {k: v for k, v in changed.items() if not k.startswith("_")}
