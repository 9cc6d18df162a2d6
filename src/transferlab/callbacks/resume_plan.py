"""Optimiser settings and learning-rate plans that follow the config across a resume.

A checkpoint restores the optimiser's and the scheduler's whole state: the hyperparameters of
every parameter group (learning rate, weight decay, momentum) and the length the schedule was
planned for (``T_max`` of a cosine schedule, ``total_steps`` of a one-cycle or Ganin's annealing).
A resume with another config would then silently keep the old values: a resume into a longer run
would continue from the end of the old plan (a cosine at its minimum: lr 0 for every extra
epoch), a resume with a new ``method.optimizer.lr`` would keep the old one. ``replan`` puts the new
config's values back and sets the learning rate the new plan gives at the current step, so the run
continues as one started with the new config would at that step.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
from lightning.pytorch import Callback
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, _enable_get_lr_call

from transferlab.utils.log import log

#: the attributes in which a scheduler stores the run's length and its base learning rates
SCHEDULER_ATTRIBUTES = ("T_max", "total_steps", "_schedule_phases", "base_lrs")


def planned_state(optimizer: Optimizer, scheduler: LRScheduler | None) -> dict[str, Any]:
    """What the config asks for, read from a freshly built optimiser and scheduler: every group's
    hyperparameters and the scheduler's run-length attributes."""
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    attributes = {}
    if scheduler is not None:
        attributes = {
            k: copy.deepcopy(getattr(scheduler, k)) for k in SCHEDULER_ATTRIBUTES if hasattr(scheduler, k)
        }
    return {"groups": groups, "scheduler": attributes}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def replan(optimizer: Optimizer, scheduler: LRScheduler | None, planned: dict[str, Any]) -> dict[str, tuple]:
    """Restore ``planned`` (from ``planned_state``) into a restored optimiser and scheduler that
    differ from it; return what changed (name -> (restored, planned)), empty when they agree.

    The values a scheduler sets at every step (``lr``; the momentum of a one-cycle schedule) are
    recomputed from the plan at the current step, not compared."""
    changed: dict[str, tuple] = {}
    stepped = scheduled_keys(scheduler)
    for group, fresh in zip(optimizer.param_groups, planned["groups"], strict=True):
        for key, value in fresh.items():
            if key in stepped:
                continue
            if not _same(group.get(key), value):
                changed.setdefault(key, (group.get(key), value))
                group[key] = copy.deepcopy(value)
    for key, value in planned["scheduler"].items():
        if scheduler is not None and not _same(getattr(scheduler, key), value):
            changed.setdefault(key, (getattr(scheduler, key), value))
            setattr(scheduler, key, copy.deepcopy(value))
    if changed and scheduler is not None:
        with _enable_get_lr_call(scheduler):
            closed_form = getattr(scheduler, "_get_closed_form_lr", None)
            rates = closed_form() if closed_form is not None else scheduler.get_lr()
        for group, rate in zip(optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return {k: v for k, v in changed.items() if not k.startswith("_")}


def scheduled_keys(scheduler: LRScheduler | None) -> set[str]:
    """The parameter-group keys ``scheduler`` rewrites at every step."""
    if scheduler is None:
        return set()
    return {"lr", "momentum", "betas"} if getattr(scheduler, "cycle_momentum", False) else {"lr"}


class ResumePlan(Callback):
    """Records the optimiser settings and schedule the config plans (before a checkpoint restores
    its own) and, when training starts, puts them back where the restored state differs (a no-op
    in a plain resume), logging what changed."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.planned = (
            planned_state(trainer.optimizers[0], self._scheduler(trainer)) if trainer.optimizers else None
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        planned = getattr(self, "planned", None)
        if planned is None or not trainer.optimizers:
            return
        changed = replan(trainer.optimizers[0], self._scheduler(trainer), planned)
        if changed:
            detail = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            log.info(
                "resume: the config changes what the checkpoint restored (%s); the config's values "
                "hold from step %d, lr now %s",
                detail,
                trainer.global_step,
                [round(group["lr"], 6) for group in trainer.optimizers[0].param_groups],
            )

    @staticmethod
    def _scheduler(trainer: L.Trainer) -> LRScheduler | None:
        configs = trainer.lr_scheduler_configs
        return configs[0].scheduler if configs else None
