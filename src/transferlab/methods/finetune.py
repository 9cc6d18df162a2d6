"""Parameter transfer: min_θ CE(y, f_θ(x)) + λ·R, starting from the source weights θ_s.

R is a ``Regularizer``: on parameters (L2, L2-SP), on the batch's features (BSS), or on the
feature maps of a frozen copy of the source net (DELTA). It declares what it reads; this module
computes only that.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.regularizers import (
    SOURCE_NET,
    SOURCE_WEIGHTS,
    FeatureMapDistance,
    Regularizer,
    RegularizerInputs,
)
from transferlab.methods.base import decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.utils.checkpoint import load_backbone
from transferlab.utils.entry import log
from transferlab.utils.errors import ConfigError


class FinetuneModule(SupervisedModule):
    """Fine-tune ``net`` from source weights, with a fresh head for the target classes.

    The source weights θ_s are those of ``source_ckpt``, or, without one, the net's own pretrained
    weights (``net=torchvision net.weights=IMAGENET1K_V2``): a pretrained model is a source.

    Args:
        source_ckpt: the source checkpoint (or its run directory); None: the net's own weights
            if it is pretrained, else training from scratch.
        regularizer: R — ``NoRegularizer``, ``L2`` (toward zero), ``L2SP`` (toward θ_s),
            ``BatchSpectralShrinkage``, ``FeatureMapDistance`` (DELTA).
        lam: λ ≥ 0, the weight of R; λ = 0 is plain fine-tuning.
        backbone_lr_mult: the backbone's learning rate relative to the head's.
        freeze_backbone: train the head alone (a linear probe); BatchNorm statistics stay fixed.
        attention_images: how many training images DELTA's channel attention is measured on.
    """

    def __init__(
        self,
        *args: Any,
        source_ckpt: str | None = None,
        regularizer: Regularizer,
        lam: float = 0.0,
        backbone_lr_mult: float = 1.0,
        freeze_backbone: bool = False,
        attention_images: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 is plain fine-tuning)")
        has_source = source_ckpt is not None or bool(getattr(self.net, "pretrained", False))
        needs_source = lam > 0 and bool(regularizer.needs & {SOURCE_WEIGHTS, SOURCE_NET})
        if not has_source and (freeze_backbone or needs_source):
            raise ConfigError(
                f"a linear probe or {type(regularizer).__name__} needs source weights; set "
                f"method.source_ckpt=<checkpoint>, pick an experiment with a pretraining stage "
                f"(e.g. experiment=split_finetune), or a pretrained net (net=torchvision net.weights=...)"
            )
        if not has_source:
            log.info(
                "fine-tuning with no source (method.source_ckpt=null, no pretrained net): "
                "training from scratch"
            )
            self.notes.append("no source: trained from scratch")
        self.regularizer = regularizer
        self.lam = lam
        self.backbone_lr_mult = backbone_lr_mult
        self.freeze_backbone = freeze_backbone
        self.attention_images = attention_images
        if source_ckpt is not None:
            load_backbone(self.net, source_ckpt, self.metadata.get("net", {}), "method.source_ckpt")
        # θ_s as buffers: detached, they follow the module's device and are checkpointed
        self._source_names: dict[str, str] = {}
        if has_source:
            for name, param in self.net.backbone.named_parameters():
                buffer_name = "source__" + name.replace(".", "__")
                self.register_buffer(buffer_name, param.detach().clone())
                self._source_names[name] = buffer_name
        # a frozen copy of the source backbone (BatchNorm statistics included), for DELTA
        self.source_backbone: nn.Module | None = None
        if needs_source and SOURCE_NET in regularizer.needs:
            check_layers(self.net.backbone, regularizer.layers)
            self.source_backbone = copy.deepcopy(self.net.backbone).requires_grad_(False).eval()
        if freeze_backbone:
            self.net.backbone.requires_grad_(False)

    @property
    def source_weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, buffer) for name, buffer in self._source_names.items()}

    def regularizer_inputs(self, images: torch.Tensor) -> tuple[RegularizerInputs, torch.Tensor]:
        """One forward pass of the fine-tuned net (and of the frozen source net where R reads
        it): R's inputs and the logits."""
        reads_source_net = self.source_backbone is not None
        layers = self.regularizer.layers if reads_source_net else ()
        with capture(self.net.backbone, layers) as maps:
            features = self.net.features(images)
        inputs = RegularizerInputs(
            backbone=list(self.net.backbone.named_parameters()),
            head=list(self.net.head.named_parameters()),
            source_weights=self.source_weights,
            features=features,
            feature_maps=maps,
        )
        if reads_source_net:
            self.source_backbone.eval()  # Lightning's train() reaches it too; it stays frozen
            with torch.no_grad(), capture(self.source_backbone, layers) as source_maps:
                self.source_backbone(images)
            inputs.source_feature_maps = source_maps
        return inputs, self.net.head(features)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        """R for the current weights on a batch of images."""
        inputs, _ = self.regularizer_inputs(images)
        return self.regularizer(inputs).to(self.device)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels = batch
        inputs, logits = self.regularizer_inputs(images)
        ce = self.criterion(logits, labels)
        if self.lam > 0:
            reg = self.regularizer(inputs).to(self.device)
            return {"loss": ce + self.lam * reg, "ce": ce, "reg": reg}, logits, labels
        if self.regularizer.needs <= {SOURCE_WEIGHTS} and (self._source_names or not self.regularizer.needs):
            # still worth logging: how far unregularised fine-tuning moves in R's units
            with torch.no_grad():
                reg = self.regularizer(inputs).to(self.device)
            return {"loss": ce, "ce": ce, "reg": reg}, logits, labels
        return {"loss": ce, "ce": ce}, logits, labels

    def parameter_groups(self) -> list[dict[str, Any]]:
        # parameters that λ·R already regularises get no optimiser weight decay on top
        regularised = self.lam > 0
        backbone = decay_groups(
            "backbone",
            self.net.backbone.named_parameters(),
            lr_scale=self.backbone_lr_mult,
            weight_decay=not (regularised and self.regularizer.regularises_backbone),
        )
        head = decay_groups(
            "head",
            self.net.head.named_parameters(),
            weight_decay=not (regularised and self.regularizer.regularises_head),
        )
        return backbone + head

    def on_fit_start(self) -> None:
        regularizer = self.regularizer
        if (
            isinstance(regularizer, FeatureMapDistance)
            and regularizer.attention
            and self.source_backbone is not None
        ):
            weights = self.channel_attention(regularizer.layers) if self.trainer.is_global_zero else None
            regularizer.channel_weights = self.trainer.strategy.broadcast(weights, src=0)

    @torch.no_grad()
    def channel_attention(self, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """DELTA's channel attention W_j: how much the source net's loss on target images rises
        when channel c of layer j is zeroed, standardised over the layer's channels and passed
        through softmax(·/5). The loss is that of a linear classifier fitted on the frozen source
        features (Adam, 200 full-batch steps). The random generators are left as they were."""
        assert self.source_backbone is not None
        devices = [self.device] if self.device.type == "cuda" else []  # augmentation on the GPU draws there
        with torch.random.fork_rng(devices=devices):
            return self._channel_attention(layers)

    def _channel_attention(self, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        images, labels = [], []
        for batch in self.trainer.datamodule.train_dataloader():
            images.append(batch[0])
            labels.append(batch[1])
            if sum(len(x) for x in images) >= self.attention_images:
                break
        x = torch.cat(images)[: self.attention_images].to(self.device)
        y = torch.cat(labels)[: self.attention_images].to(self.device)
        source = self.source_backbone.eval()
        features = source(x).flatten(1)
        head = nn.Linear(features.shape[1], self.net.num_classes).to(self.device)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
        with torch.enable_grad():
            for _ in range(200):
                optimizer.zero_grad()
                F.cross_entropy(head(features), y).backward()
                optimizer.step()
        base = F.cross_entropy(head(features), y)
        weights: dict[str, torch.Tensor] = {}
        for layer in layers:
            module = source.get_submodule(layer)
            with capture(source, [layer]) as seen:
                source(x[:1])
            rises = []
            for channel in range(seen[layer].shape[1]):

                def drop(
                    _module: nn.Module, _inputs: Any, output: torch.Tensor, c: int = channel
                ) -> torch.Tensor:
                    output = output.clone()
                    output[:, c] = 0
                    return output

                handle = module.register_forward_hook(drop)
                try:
                    rises.append(F.cross_entropy(head(source(x).flatten(1)), y) - base)
                finally:
                    handle.remove()
            rise = torch.stack(rises)
            standard = (rise - rise.mean()) / rise.std().clamp_min(1e-12)
            weights[layer] = torch.softmax(standard / 5, dim=0)
        log.info("DELTA channel attention measured on %d images for layers %s", len(x), list(layers))
        return weights

    def on_train_epoch_start(self) -> None:
        # a frozen backbone keeps its BatchNorm statistics too; Lightning restores the modes it
        # saw before validation, so eval mode is set again at every epoch
        if self.freeze_backbone:
            self.net.backbone.eval()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if not self._source_names:
            return
        # ‖w − w_s‖ per top-level block of the backbone: where fine-tuning moves the net
        drift: dict[str, torch.Tensor] = {}
        for name, param in self.net.backbone.named_parameters():
            block = name.split(".")[0]
            delta = (param.detach() - getattr(self, self._source_names[name])).pow(2).sum()
            drift[block] = drift.get(block, torch.zeros((), device=self.device)) + delta
        self.log_dict({f"drift/block{k}": v.sqrt() for k, v in drift.items()})


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


def check_layers(backbone: nn.Module, layers: Sequence[str]) -> None:
    """Refuse a layer name the backbone does not have, listing the names it has."""
    for layer in layers:
        try:
            backbone.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in backbone.named_children()]
            raise ConfigError(
                f"method.regularizer.layers: the backbone has no layer {layer!r}; its top-level "
                f"layers are {names} ('' is its output, the features)"
            ) from None
