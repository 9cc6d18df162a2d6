"""Parameter transfer: min_θ CE(y, f_θ(x)) + λ·R, starting from the source weights θ_s.

R is the family's slot member, a ``Regularizer``: on parameters (L2, L2-SP), on the batch's
features (BSS), or on the feature maps of the frozen source net (DELTA). It declares what it
reads (``needs``); this module computes only that, and calls its ``setup`` once before training.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback

from transferlab.callbacks.transferability import TransferabilityProbe
from transferlab.losses.regularizers.base import Regularizer, RegularizerInputs
from transferlab.losses.slot import FEATURE_MAPS, FEATURES, SOURCE_WEIGHTS
from transferlab.methods.param_groups import decay_groups, layer_decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.nets.reference import FrozenNet, capture, check_layers, load_head, load_source
from transferlab.peft.base import PEFT_KEY, ParameterEfficient, trained_fraction, trained_state
from transferlab.peft.none import FullFineTuning
from transferlab.transferability.base import load_scores
from transferlab.utils.checkpoint import START_KEY, HandedCheckpoint
from transferlab.utils.errors import ConfigError
from transferlab.utils.log import log


class FinetuneModule(SupervisedModule):
    """Fine-tune ``net`` from source weights, with a fresh head for the target classes.

    The source weights θ_s are those of ``source_ckpt``, or, without one, the net's own pretrained
    weights (``net=torchvision net.weights=IMAGENET1K_V2``): a pretrained model is a source. A
    frozen copy of the starting backbone (``source_net``) holds θ_s and gives the source's feature
    maps; like every frozen reference net it is rebuilt from the source, never saved.

    Args:
        source_ckpt: the source checkpoint (or its run directory); None: the net's own weights
            if it is pretrained, else training from scratch.
        regularizer: R — ``NoRegularizer``, ``L2`` (toward zero), ``L2SP`` (toward θ_s),
            ``BatchSpectralShrinkage``, ``FeatureMapDistance`` (DELTA), or any ``Regularizer``.
        lam: λ ≥ 0, the weight of R; λ = 0 is plain fine-tuning.
        backbone_lr_mult: the backbone's learning rate relative to the head's.
        layer_decay: layer-wise learning-rate decay, δ in (0, 1]: a backbone parameter at depth d of
            L (``param_groups.layer_depths``) learns at δ^(L − d) times the backbone's rate; None:
            one rate for the whole backbone.
        freeze_backbone: train the head alone (a linear probe); BatchNorm statistics stay fixed.
        transferability: the scores (members of ``conf/score/`` by name; ``all``: every one) of
            the starting net on the target's training images, computed once before training by
            a ``TransferabilityProbe`` the module hands the trainer. Empty: none.
        keep_head: start the head from the source's too (its classes must be the target's, by name
            and in order): the second stage of LP-FT, whose source is a linear probe on the target
            (``experiment=split_lpft``); the start θ_0 of WiSE-FT (``transferlab.eval wise_alpha=``).
        peft: which parameters train (``transferlab.peft``: full fine-tuning, BitFit, LoRA,
            bottleneck adapters), applied to the net once the source is in; the parameters it
            trains are counted in ``reports``, and with a member that trains a part its
            checkpoints keep only that part and a pointer to the source.
    """

    def __init__(
        self,
        *args: Any,
        source_ckpt: str | None = None,
        regularizer: Regularizer,
        lam: float = 0.0,
        backbone_lr_mult: float = 1.0,
        layer_decay: float | None = None,
        freeze_backbone: bool = False,
        transferability: Sequence[str] | str = (),
        keep_head: bool = False,
        peft: ParameterEfficient | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 is plain fine-tuning)")
        self.transferability = load_scores(transferability or [], "method.transferability")
        self.source_ckpt = source_ckpt
        source = load_source(self.net, source_ckpt, self.contract)
        self.keep_head = keep_head
        if keep_head:
            if source is None:
                raise ConfigError(
                    "method.keep_head=true starts the head from the source's: set method.source_ckpt "
                    "(LP-FT: experiment=split_lpft, whose first stage is the linear probe)"
                )
            load_head(self.net, source, self.contract)
        self.start = source
        has_source = source is not None or bool(getattr(self.net, "pretrained", False))
        needs_source = lam > 0 and bool(regularizer.needs & {SOURCE_WEIGHTS, FEATURE_MAPS})
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
            self.reports["from_scratch"] = True  # the transferability report's baseline
        if FEATURE_MAPS in regularizer.needs:
            check_layers(self.net.backbone, regularizer.layers, "method.regularizer.layers")
        self.regularizer = regularizer
        self.lam = lam
        self.backbone_lr_mult = backbone_lr_mult
        if layer_decay is not None and not 0 < layer_decay <= 1:
            raise ConfigError(
                f"method.layer_decay={layer_decay} must be in (0, 1] (0.65–0.75 in BEiT's recipes)"
            )
        self.layer_decay = layer_decay
        self.freeze_backbone = freeze_backbone
        self.source_net = FrozenNet(copy.deepcopy(self.net.backbone)) if has_source else None
        if freeze_backbone:
            self.net.backbone.requires_grad_(False)
        self.peft = peft or FullFineTuning()
        self.apply_peft(source, lam, regularizer)
        trained, total = trained_fraction(self.net)  # every arm's cost: a probe's head, a member's part
        self.reports["trained_parameters"] = trained
        self.reports["trained_fraction"] = trained / total
        if not self.peft.full:
            name = type(self.peft).__name__
            log.info("%s trains %d of %d parameters (%.2f%%)", name, trained, total, 100 * trained / total)

    def apply_peft(self, source: HandedCheckpoint | None, lam: float, regularizer: Regularizer) -> None:
        """Apply the member to the net, once the source is in."""
        peft = self.peft
        if peft.full:
            return
        name = type(peft).__name__
        if self.freeze_backbone:
            raise ConfigError(
                f"method.freeze_backbone=true is a linear probe; with method/peft ({name}) the "
                f"backbone trains in part: set one of them"
            )
        if peft.adds_parameters and lam > 0 and SOURCE_WEIGHTS in regularizer.needs:
            raise ConfigError(
                f"method/peft ({name}) trains new parameters that have no source value, so "
                f"{type(regularizer).__name__} (method.lam={lam}) has nothing to pull toward the source: "
                f"set method.lam=0 or method/regularizer=none (a penalty on features, bss or delta, applies)"
            )
        peft.apply(self.net)
        self.peft_base = {
            "source_ckpt": str(source.path) if source is not None else None,
            "source_sha256": source.sha256 if source is not None else None,
        }
        self.strict_loading = False  # its checkpoints hold the trained part; the rest is the source's

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.keep_head:  # where θ_0 is, for WiSE-FT's interpolation (transferlab.eval wise_alpha=)
            checkpoint[START_KEY] = {"source_ckpt": str(self.start.path), "source_sha256": self.start.sha256}
        if self.peft.full:
            return
        state = checkpoint["state_dict"]
        kept = trained_state(self.net, "net.", state)
        checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith("net.") or k in kept}
        checkpoint[PEFT_KEY] = {"member": self.peft.config(), **self.peft_base}

    @property
    def source_weights(self) -> dict[str, torch.Tensor]:
        """θ_s by backbone parameter name (empty without a source)."""
        return self.source_net.parameters_by_name if self.source_net is not None else {}

    @property
    def transfer_term_off(self) -> bool:
        """λ = 0 or R = 0: plain fine-tuning, the control of a regularizer sweep."""
        return self.lam == 0 or self.regularizer.is_zero

    def handed_callbacks(self) -> list[Callback]:
        probe = [TransferabilityProbe(self.transferability, self.source_ckpt)] if self.transferability else []
        return [*super().handed_callbacks(), *probe]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.lam > 0:  # R's preparation (DELTA's attention) matters only where R is trained on
            self.regularizer.setup(self.setup_context(stage, self.source_net))

    def regularizer_inputs(
        self, images: torch.Tensor, reads: frozenset[str]
    ) -> tuple[RegularizerInputs, torch.Tensor]:
        """One forward pass of the fine-tuned net (and of the frozen source net when R reads its
        feature maps): R's inputs, holding what ``reads`` names, and the logits."""
        maps_layers = self.regularizer.layers if FEATURE_MAPS in reads and self.source_net is not None else ()
        with capture(self.net.backbone, maps_layers) as maps:
            features = self.net.features(images)
        inputs = RegularizerInputs(  # the backbone's parameters that train (all of them unless peft)
            backbone=[(n, p) for n, p in self.net.backbone.named_parameters() if p.requires_grad],
            head=list(self.net.head.named_parameters()),
            source_weights=self.source_weights if SOURCE_WEIGHTS in reads else {},
            features=features if FEATURES in reads else None,
            feature_maps=maps,
        )
        if maps_layers:
            with capture(self.source_net.module, self.regularizer.reference_layers) as source_maps:
                self.source_net(images)
            inputs.source_feature_maps = source_maps
        return inputs, self.net.head(features)

    def penalty(self, images: torch.Tensor) -> torch.Tensor:
        """R for the current weights on a batch of images."""
        inputs, _ = self.regularizer_inputs(images, self.regularizer.needs)
        return self.regularizer(inputs).to(self.device)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels = batch
        needs = self.regularizer.needs
        # with λ = 0, a parameter penalty is still worth logging: how far plain fine-tuning moves
        # in R's units (nothing else is computed for it)
        logged_only = (
            self.lam == 0
            and needs <= {SOURCE_WEIGHTS}
            and (self.source_net is not None or not needs)
            and not self.peft.adds_parameters  # new parameters have no source value to measure from
        )
        inputs, logits = self.regularizer_inputs(
            images, needs if self.lam > 0 or logged_only else frozenset()
        )
        ce = self.criterion(logits, labels)
        if self.lam > 0:
            reg = self.regularizer(inputs).to(self.device)
            return {"loss": ce + self.lam * reg, "ce": ce, "reg": reg}, logits, labels
        if logged_only:
            with torch.no_grad():
                reg = self.regularizer(inputs).to(self.device)
            return {"loss": ce, "ce": ce, "reg": reg}, logits, labels
        return {"loss": ce, "ce": ce}, logits, labels

    def parameter_groups(self) -> list[dict[str, Any]]:
        # parameters that λ·R already regularises get no optimiser weight decay on top
        regularised = self.lam > 0
        decay_backbone = not (regularised and self.regularizer.regularises_backbone)
        if self.layer_decay is not None:
            backbone = layer_decay_groups(
                self.net.backbone, self.layer_decay, self.backbone_lr_mult, decay_backbone
            )
        else:
            backbone = decay_groups(
                "backbone",
                self.net.backbone.named_parameters(),
                lr_scale=self.backbone_lr_mult,
                weight_decay=decay_backbone,
            )
        head = decay_groups(
            "head",
            self.net.head.named_parameters(),
            weight_decay=not (regularised and self.regularizer.regularises_head),
        )
        new = decay_groups("bottleneck", self.net.bottleneck.named_parameters())  # new, like the head
        # what a peft member adds beside the backbone (adapters), at the backbone's rate
        beside = [
            (n, p)
            for n, p in self.net.named_parameters()
            if not n.startswith(("backbone.", "head.", "bottleneck."))
        ]
        return backbone + head + new + decay_groups("peft", beside, lr_scale=self.backbone_lr_mult)

    def on_train_epoch_start(self) -> None:
        # a frozen backbone keeps its BatchNorm statistics too; Lightning restores the modes it
        # saw before validation, so eval mode is set again at every epoch
        if self.freeze_backbone:
            self.net.backbone.eval()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        source = self.source_weights
        if not source:
            return
        # ‖w − w_s‖ per top-level block of the backbone: where fine-tuning moves the net
        drift: dict[str, torch.Tensor] = {}
        for name, param in self.net.backbone.named_parameters():
            if name not in source:  # a parameter peft renamed or added: frozen, or no source value
                continue
            block = name.split(".")[0]
            delta = (param.detach() - source[name]).pow(2).sum()
            drift[block] = drift.get(block, torch.zeros((), device=self.device)) + delta
        # numbered blocks (a Sequential) as block<i>; named ones (torchvision's, timm's) by name
        self.log_dict({f"drift/{'block' * k.isdigit()}{k}": v.sqrt() for k, v in drift.items()})
