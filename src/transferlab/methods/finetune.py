"""Parameter transfer: min_θ CE(y, f_θ(x)) + λ·R(θ_s, θ), starting from the source weights θ_s."""

from __future__ import annotations

from typing import Any

import torch

from transferlab.losses.regularizers import L2SP, ParameterRegularizer
from transferlab.methods.base import decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.utils.checkpoint import load_backbone
from transferlab.utils.errors import ConfigError


class FinetuneModule(SupervisedModule):
    """Fine-tune ``net`` from a source checkpoint, with a fresh head for the target classes.

    Args:
        source_ckpt: the source checkpoint (or its run directory); None trains from scratch.
        regularizer: R(θ_s, θ) — ``NoRegularizer``, ``L2`` (toward zero), ``L2SP`` (toward θ_s).
        lam: λ ≥ 0, the weight of R; λ = 0 is plain fine-tuning.
        backbone_lr_mult: the backbone's learning rate relative to the head's.
        freeze_backbone: train the head alone (a linear probe); BatchNorm statistics stay fixed.
    """

    def __init__(
        self,
        *args: Any,
        source_ckpt: str | None = None,
        regularizer: ParameterRegularizer,
        lam: float = 0.0,
        backbone_lr_mult: float = 1.0,
        freeze_backbone: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 is plain fine-tuning)")
        if source_ckpt is None and (freeze_backbone or (lam > 0 and isinstance(regularizer, L2SP))):
            raise ConfigError(
                "a linear probe or L2-SP needs source weights; set method.source_ckpt=<checkpoint> "
                "or pick an experiment with a pretraining stage (e.g. experiment=split_finetune)"
            )
        self.regularizer = regularizer
        self.lam = lam
        self.backbone_lr_mult = backbone_lr_mult
        self.freeze_backbone = freeze_backbone
        # θ_s as buffers: detached, they follow the module's device and are checkpointed
        self._source_names: dict[str, str] = {}
        if source_ckpt is not None:
            load_backbone(self.net, source_ckpt, self.metadata.get("net", {}), "method.source_ckpt")
            for name, param in self.net.backbone.named_parameters():
                buffer_name = "source__" + name.replace(".", "__")
                self.register_buffer(buffer_name, param.detach().clone())
                self._source_names[name] = buffer_name
        if freeze_backbone:
            self.net.backbone.requires_grad_(False)

    @property
    def source_weights(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, buffer) for name, buffer in self._source_names.items()}

    def penalty(self) -> torch.Tensor:
        """R(θ_s, θ) for the current weights."""
        return self.regularizer(
            self.net.backbone.named_parameters(),
            self.net.head.named_parameters(),
            self.source_weights,
        ).to(self.device)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        terms, logits, labels = super().training_loss(batch)
        ce = terms["loss"]
        if self.lam > 0:
            reg = self.penalty()
        else:  # still worth logging: how far unregularised fine-tuning moves in R's units
            with torch.no_grad():
                reg = self.penalty()
        return {"loss": ce + self.lam * reg, "ce": ce, "reg": reg}, logits, labels

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

    def on_train_epoch_start(self) -> None:
        # a frozen backbone keeps its BatchNorm statistics too; Lightning restores the modes it
        # saw before validation, so eval mode is set again at every epoch
        if self.freeze_backbone:
            self.net.backbone.eval()

    def on_train_epoch_end(self) -> None:
        if not self._source_names:
            return
        # ‖w − w_s‖ per top-level block of the backbone: where fine-tuning moves the net
        drift: dict[str, torch.Tensor] = {}
        for name, param in self.net.backbone.named_parameters():
            block = name.split(".")[0]
            delta = (param.detach() - getattr(self, self._source_names[name])).pow(2).sum()
            drift[block] = drift.get(block, torch.zeros((), device=self.device)) + delta
        self.log_dict({f"drift/block{k}": v.sqrt() for k, v in drift.items()})
