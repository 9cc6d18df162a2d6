"""Reference nets: what one run hands another (a source, a teacher), rebuilt and frozen, and the
feature maps read at named layers.

One place owns the three things every transfer method needs from another run:

- ``build_net`` / ``load_backbone``: a ``HandedCheckpoint`` (``utils/checkpoint.py``) rebuilt as a
  whole net (a teacher) or copied into a net's backbone (a source), refused in one line when it
  does not fit;
- ``FrozenNet``: the policy for a frozen reference net — always in eval mode (its BatchNorm
  statistics never move), no gradients, outside the optimiser, and **never saved** in the run's
  checkpoints: it is rebuilt from its own checkpoint (or the pretrained net) whenever the run's
  module is built, a resume included;
- ``capture``: the outputs of named submodules during a forward pass (feature maps for DELTA and
  for feature distillation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf
from torch import nn

from transferlab.nets.base import Classifier
from transferlab.utils.checkpoint import HandedCheckpoint, open_checkpoint
from transferlab.utils.contract import RunContract, check_handed
from transferlab.utils.errors import CheckpointError, ConfigError
from transferlab.utils.state_dict import mismatches


def build_net(checkpoint: HandedCheckpoint) -> Classifier:
    """The checkpoint's net, rebuilt from its contract's net config, with its weights; a
    checkpoint that keeps only the part a parameter-efficient run trained (``partial``) is
    rebuilt on its source (``rebuild_partial``)."""
    if checkpoint.partial:
        return rebuild_partial(checkpoint)
    net_config = dict(checkpoint.contract.net)
    if "weights" in net_config:  # pretrained weights are in the checkpoint: never fetch them again
        net_config["weights"] = None
    net = hydra.utils.instantiate(OmegaConf.create(net_config), num_classes=checkpoint.contract.num_classes)
    net.load_state_dict(checkpoint.weights("net."))
    return net


def rebuild_partial(checkpoint: HandedCheckpoint) -> Classifier:
    """The net of a run that trained a part (``transferlab.peft``): its base — the source
    checkpoint it started from (which must still hold what it held then: its sha256), or the
    pretrained net's own weights (``net.weights``, which must still be there) — then the member
    applied again, then the trained part loaded (and nothing else may differ)."""
    record = checkpoint.partial or {}
    where = f"{checkpoint.what}={checkpoint.path}"
    net_config = dict(checkpoint.contract.net)
    source_ckpt = record.get("source_ckpt")
    weights = net_config.get("weights")
    if source_ckpt is not None and "weights" in net_config:  # the source holds the backbone
        net_config["weights"] = None
    elif weights and weights != "hub" and not Path(str(weights)).is_file() and "/" in str(weights):
        raise CheckpointError(
            f"{where} keeps only the part its run trained; the rest is the pretrained "
            f"net.weights={net_config['weights']}, which is gone: restore that file"
        )
    net = hydra.utils.instantiate(OmegaConf.create(net_config), num_classes=checkpoint.contract.num_classes)
    if source_ckpt is not None:
        if not Path(source_ckpt).is_file():
            raise CheckpointError(
                f"{where} keeps only the part its run trained; the rest is its source {source_ckpt}, "
                f"which is gone: restore it (or retrain without method/peft)"
            )
        source = open_checkpoint(source_ckpt, "its source")
        if source.sha256 != record.get("source_sha256"):
            raise CheckpointError(
                f"{where} keeps only the part its run trained on top of {source_ckpt}, and that "
                f"file changed since (sha256): the part no longer fits it"
            )
        load_backbone(net, source, checkpoint.contract.net)
    hydra.utils.instantiate(OmegaConf.create(record["member"])).apply(net)
    part = checkpoint.weights("net.")
    expected = net.state_dict()
    unexpected = [k for k in part if k not in expected or part[k].shape != expected[k].shape]
    if unexpected:
        raise CheckpointError(
            f"{where}: its trained part does not fit the rebuilt net ({', '.join(unexpected[:4])})"
        )
    net.load_state_dict(part, strict=False)
    return net


def interpolate_with_start(net: Classifier, checkpoint: HandedCheckpoint, alpha: float) -> None:
    """WiSE-FT (Wortsman et al., CVPR 2022): set ``net`` (the checkpoint's, θ_1) to
    θ_α = (1 − α)·θ_0 + α·θ_1, θ_0 the run's start — its source's backbone and head, which the
    run recorded (``method.keep_head=true``) — every floating-point tensor, BatchNorm statistics
    included (integer counters stay θ_1's)."""
    where = f"wise_alpha={alpha}, ckpt_path={checkpoint.path}"
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"wise_alpha={alpha} must be in [0, 1] (0: the start θ_0, 1: the fine-tuned θ_1)")
    start = checkpoint.start
    if not start:
        raise ConfigError(
            f"{where}: the run did not start from a head of its classes, so it has no θ_0 to "
            f"interpolate with; fine-tune with method.keep_head=true (LP-FT: experiment=split_lpft)"
        )
    if checkpoint.partial:
        raise ConfigError(f"{where}: WiSE-FT of a parameter-efficient run (method/peft) is not supported")
    source = open_checkpoint(start["source_ckpt"], "its start")
    if source.sha256 != start.get("source_sha256"):
        raise CheckpointError(f"{where}: its start {source.path} changed since the run (sha256)")
    net_config = dict(checkpoint.contract.net)
    if "weights" in net_config:
        net_config["weights"] = None
    theta_0 = hydra.utils.instantiate(
        OmegaConf.create(net_config), num_classes=checkpoint.contract.num_classes
    )
    load_backbone(theta_0, source, checkpoint.contract.net)
    load_head(theta_0, source, checkpoint.contract)
    start_state, end_state = theta_0.state_dict(), net.state_dict()
    mixed = {
        k: torch.lerp(start_state[k], v, alpha) if v.is_floating_point() else v for k, v in end_state.items()
    }
    net.load_state_dict(mixed)


def load_backbone(net: Classifier, checkpoint: HandedCheckpoint, net_config: dict[str, Any]) -> None:
    """Copy the checkpoint's backbone (weights and BatchNorm statistics) into ``net``.

    The head is left alone: the target task has its own classes. Refuses a checkpoint whose net
    config (``net_config`` is ``net``'s) or backbone tensors differ from ``net``'s, listing what
    does not match.
    """
    source_config = checkpoint.contract.net
    weights = checkpoint.weights("net.backbone.")
    problems = mismatches(weights, net.backbone.state_dict())
    if problems:
        raise CheckpointError(
            f"{checkpoint.what}={checkpoint.path} holds a {source_config.get('_target_')} backbone "
            f"that does not fit net {net_config.get('_target_')} ({problems}); "
            f"use the net the checkpoint was trained with"
        )
    differing = sorted(
        k for k in set(net_config) | set(source_config) if net_config.get(k) != source_config.get(k)
    )
    if differing:
        pairs = ", ".join(
            f"{k}: {source_config.get(k)} (source) vs {net_config.get(k)} (target)" for k in differing
        )
        raise CheckpointError(
            f"the source net and the target net configs disagree ({pairs}); "
            f"train both stages with the same net"
        )
    net.backbone.load_state_dict(weights)


class FrozenNet(nn.Module):
    """A frozen reference net (a teacher, the source backbone θ_s): eval mode whatever
    ``train()`` asks, no gradients, and left out of ``state_dict()`` (loading a checkpoint keeps
    the values it was built with). ``module`` is the wrapped net; calling the wrapper runs it
    without building a graph.

    Example::

        >>> teacher = FrozenNet(build_net(open_checkpoint(path, "method.teacher_ckpt")))
        >>> logits = teacher(images)           # no_grad, eval mode
        >>> features = teacher.features(images)
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()
        super().train(False)  # the wrapper too: Lightning restores captured modes without calling train()
        self.register_state_dict_post_hook(_drop_own_entries)
        self.register_load_state_dict_pre_hook(_keep_own_entries)

    def train(self, mode: bool = True) -> FrozenNet:
        # Lightning calls train() on the whole module at every epoch: a reference stays in eval
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``features(x)`` of a wrapped ``Classifier``."""
        return self.module.features(x)

    @property
    def feature_dim(self) -> int:
        """``feature_dim`` of a wrapped ``Classifier``."""
        return self.module.feature_dim

    @property
    def parameters_by_name(self) -> dict[str, torch.Tensor]:
        """The wrapped net's parameters by their own names (θ_s for a source backbone)."""
        return dict(self.module.named_parameters())


def _drop_own_entries(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any
) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _keep_own_entries(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key, value in module.module.state_dict(prefix=f"{prefix}module.").items():
        state_dict.setdefault(key, value)


@contextmanager
def capture(module: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``module``'s submodules named in ``layers`` (``""``: ``module``'s own
    output, flattened to (N, D)) during the forward passes inside the block."""
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for layer in layers:
        target = module.get_submodule(layer)

        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor, layer: str = layer) -> None:
            outputs[layer] = output.flatten(1) if layer == "" else output

        handles.append(target.register_forward_hook(record))
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def check_layers(module: nn.Module, layers: Sequence[str], key: str) -> None:
    """Refuse a layer name ``module`` does not have, naming the config ``key`` and listing the
    top-level layers it has."""
    for layer in layers:
        try:
            module.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in module.named_children()]
            stages = [info["module"] for info in getattr(module, "feature_info", [])]  # a timm model's
            raise ConfigError(
                f"{key}: the backbone has no layer {layer!r}; its top-level layers are {names}"
                + (f", its stages {stages}" if stages else "")
                + " ('' is its output, the features)"
            ) from None


def load_head(net: Classifier, checkpoint: HandedCheckpoint, run: RunContract) -> None:
    """Copy the checkpoint's head into ``net``: the checkpoint must predict this ``run``'s classes,
    by name and in label order (``check_handed``'s ``teacher`` route)."""
    check_handed(
        checkpoint.contract, run, "teacher", f"method.keep_head=true, {checkpoint.what}={checkpoint.path}"
    )
    net.head.load_state_dict(checkpoint.weights("net.head."))


def load_source(net: Classifier, source_ckpt: str | None, run: RunContract) -> HandedCheckpoint | None:
    """Start ``net`` from the source run ``source_ckpt`` (``method.source_ckpt``: a checkpoint or
    a run directory): its backbone is copied in, its head left for the target. The source must
    have been fed images like this ``run``'s (``check_handed``). None: no source."""
    if source_ckpt is None:
        return None
    source = open_checkpoint(source_ckpt, "method.source_ckpt")
    check_handed(source.contract, run, "source", f"method.source_ckpt={source.path}")
    load_backbone(net, source, run.net)
    return source
