"""Test-time adaptation: adapt a source model to the test stream itself, batch by batch, with no
source data and no labels (``python -m transferlab.eval ckpt_path=<source> tta=tent``).

What adapts and what it lowers is the member (``transferlab/tta/``: ``bn``, ``tent``, ``shot_im``,
one file each); this module runs it. Online (the default) carries the adapted weights from batch
to batch; ``episodic`` resets the net and the optimiser to the source before every batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from transferlab.data.base import EvalRoute
from transferlab.methods.base import ClassificationModule
from transferlab.tta.base import TestTimeAdaptation, batchnorm_layers, normalise_with_batch_statistics
from transferlab.utils.errors import ConfigError


def without_batchnorm() -> str:
    """The members of ``conf/tta/`` that adapt a net without BatchNorm layers."""
    import hydra

    from transferlab.utils.families import family, members_of, target_of

    tta = family("tta")
    usable = [
        f"tta={name}"
        for name in members_of(tta)
        if name != "none" and not hydra.utils.get_class(target_of(tta.group, name, tta.key)).needs_batchnorm
    ]
    return ", ".join(usable)


class TestTimeModule(ClassificationModule):
    """Adapt ``net`` to each test batch with ``adaptation``, then classify it.

    Args:
        adaptation: the member (``transferlab.tta``); none: the source model as it is.
        optimizer: a partial optimiser over the member's adapted parameters (a member that trains).
        steps: gradient steps per batch.
        episodic: reset to the source weights before every batch.
        batch_size: the test stream's batch size (read by ``transferlab.eval``).
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        net: nn.Module,
        adaptation: TestTimeAdaptation | None = None,
        optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer] | None = None,
        steps: int = 1,
        episodic: bool = False,
        batch_size: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, **kwargs)
        self.member = adaptation if adaptation is not None else TestTimeAdaptation()
        name = self.member.name
        if self.member.needs_batchnorm and not batchnorm_layers(net):
            raise ConfigError(
                f"tta={name} adapts BatchNorm layers and this net has none; use a net with "
                f"BatchNorm (resnet8, resnet20, wrn_16_2, ...) or a tta without it ({without_batchnorm()})"
            )
        if self.member.trains and (optimizer is None or steps < 1):
            raise ConfigError(f"tta={name} needs tta.optimizer and tta.steps >= 1")
        self.steps, self.episodic, self.batch_size = steps, episodic, batch_size
        self.optimizer_factory = optimizer
        self.adapt_optimizer: torch.optim.Optimizer | None = None
        self._source_state: dict[str, Any] | None = None

    @property
    def adaptation(self) -> str:
        return self.member.name

    @property
    def adapts(self) -> bool:
        """Whether the model changes on the stream (otherwise: plain evaluation)."""
        return self.member.batch_statistics or self.member.trains

    @property
    def needs_gradients(self) -> bool:
        return self.member.trains

    def on_test_start(self) -> None:
        if self.member.batch_statistics:
            normalise_with_batch_statistics(self.net)
        if not self.member.trains:
            return
        self.net.requires_grad_(False)
        adapted = self.member.adapted_parameters(self.net)
        for param in adapted:
            param.requires_grad_(True)
        self.adapt_optimizer = self.optimizer_factory(adapted)
        if self.episodic:
            self._source_state = {
                "net": copy.deepcopy(self.net.state_dict()),
                "optimizer": copy.deepcopy(self.adapt_optimizer.state_dict()),
            }

    def evaluation_forward(self, route: EvalRoute, images: torch.Tensor) -> torch.Tensor:
        if not self.member.trains:
            return self(images)
        if self.episodic:
            self.net.load_state_dict(self._source_state["net"])
            self.adapt_optimizer.load_state_dict(self._source_state["optimizer"])
        with torch.enable_grad():
            for _ in range(self.steps):
                logits = self(images)
                loss = self.member.objective(logits)
                loss.backward()
                self.adapt_optimizer.step()
                self.adapt_optimizer.zero_grad(set_to_none=True)
        return logits.detach()
