"""Test-time adaptation: adapt a source model to the test stream itself, batch by batch, with no
source data and no labels (``python -m transferlab.eval ckpt_path=<source> tta=tent``).

- ``bn``: BatchNorm normalises with each test batch's own statistics instead of the source's
  running ones (Schneider et al., 2020; TENT's "BN" baseline). Nothing is trained.
- ``tent`` (Wang et al., ICLR 2021): the same normalisation, and one gradient step per batch on
  the mean prediction entropy over the BatchNorm affine parameters (γ, β) only; the batch is
  predicted by the forward pass that computes the loss (before its step), as the authors' code.
- ``shot_im`` (Liang et al., ICML 2020): the information-maximisation loss over the whole feature
  extractor, the classifier head (the source hypothesis) frozen; online, one step per batch.

Online (the default) carries the adapted weights from batch to batch; ``episodic`` resets the net
and the optimiser to the source before every batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from transferlab.data.base import EvalRoute
from transferlab.losses.tta import EntropyMinimization, InformationMaximizationLoss
from transferlab.methods.base import ClassificationModule
from transferlab.utils.errors import ConfigError

ADAPTATIONS = ("none", "bn", "tent", "shot_im")
OBJECTIVES = {"tent": EntropyMinimization, "shot_im": InformationMaximizationLoss}


def batchnorm_layers(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def normalise_with_batch_statistics(net: nn.Module) -> None:
    """Every BatchNorm layer of ``net`` normalises with the statistics of the batch it sees, in
    train and eval mode alike (no running statistics kept)."""
    for layer in batchnorm_layers(net):
        layer.track_running_stats = False
        layer.running_mean = None
        layer.running_var = None


class TestTimeModule(ClassificationModule):
    """Adapt ``net`` to each test batch, then classify it.

    Args:
        adaptation: ``none``, ``bn``, ``tent`` or ``shot_im`` (see the module's docstring).
        optimizer: a partial optimiser over the adapted parameters (``tent``, ``shot_im``).
        steps: gradient steps per batch.
        episodic: reset to the source weights before every batch.
        batch_size: the test stream's batch size (read by ``transferlab.eval``).
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        net: nn.Module,
        adaptation: str = "none",
        optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer] | None = None,
        steps: int = 1,
        episodic: bool = False,
        batch_size: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(net, **kwargs)
        if adaptation not in ADAPTATIONS:
            raise ConfigError(f"tta.adaptation={adaptation!r}; use one of {', '.join(ADAPTATIONS)}")
        if adaptation in ("bn", "tent") and not batchnorm_layers(net):
            raise ConfigError(
                f"tta={adaptation} adapts BatchNorm layers and this net has none; use a net with "
                f"BatchNorm (resnet8, resnet20, wrn_16_2, ...) or tta=shot_im"
            )
        if adaptation in OBJECTIVES and (optimizer is None or steps < 1):
            raise ConfigError(f"tta={adaptation} needs tta.optimizer and tta.steps >= 1")
        self.adaptation, self.steps, self.episodic, self.batch_size = adaptation, steps, episodic, batch_size
        self.objective = OBJECTIVES[adaptation]() if adaptation in OBJECTIVES else None
        self.optimizer_factory = optimizer
        self.adapt_optimizer: torch.optim.Optimizer | None = None
        self._source_state: dict[str, Any] | None = None

    @property
    def needs_gradients(self) -> bool:
        return self.objective is not None

    def adapted_parameters(self) -> list[nn.Parameter]:
        """TENT: the BatchNorm affine parameters; SHOT-IM: the feature extractor (not the head)."""
        if self.adaptation == "tent":
            return [
                p for layer in batchnorm_layers(self.net) for p in (layer.weight, layer.bias) if p is not None
            ]
        return list(self.net.backbone.parameters())

    def on_test_start(self) -> None:
        if self.adaptation != "none":
            normalise_with_batch_statistics(self.net)
        if self.objective is None:
            return
        self.net.requires_grad_(False)
        adapted = self.adapted_parameters()
        for param in adapted:
            param.requires_grad_(True)
        self.adapt_optimizer = self.optimizer_factory(adapted)
        if self.episodic:
            self._source_state = {
                "net": copy.deepcopy(self.net.state_dict()),
                "optimizer": copy.deepcopy(self.adapt_optimizer.state_dict()),
            }

    def evaluation_forward(self, route: EvalRoute, images: torch.Tensor) -> torch.Tensor:
        if self.objective is None:
            return self(images)
        if self.episodic:
            self.net.load_state_dict(self._source_state["net"])
            self.adapt_optimizer.load_state_dict(self._source_state["optimizer"])
        with torch.enable_grad():
            for _ in range(self.steps):
                logits = self(images)
                loss = self.objective(logits)
                loss.backward()
                self.adapt_optimizer.step()
                self.adapt_optimizer.zero_grad(set_to_none=True)
        return logits.detach()
