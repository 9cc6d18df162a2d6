"""Knowledge distillation: a student learns from the labels and from a frozen teacher,

    L = γ·CE(y, s) + Σ_m λ_m·L_m,

one term per member m of the distillation slot (``method.losses``: KD, FitNets, or any
``DistillationLoss``), each with its own weight λ_m (``method.losses.<m>.lam``) and γ
``method.ce_weight``, the way RepDistiller's -r/-a/-b combine them. Its default, γ = 0.1 with KD
at λ = 0.9, is Hinton et al.'s convex mix (1 − λ)·CE + λ·KD. The student alone is γ = 1 with
every λ_m = 0 (``method.ce_weight=1 method.losses.kd.lam=0``), or ``method=supervised``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferlab.losses.distillation import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURE_MAPS, INDICES, LOGITS
from transferlab.methods.base import decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.nets.reference import FrozenNet, build_net, capture, check_layers
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.errors import CheckpointError, ConfigError
from transferlab.utils.run_files import write_tensor_atomic


class DistillModule(SupervisedModule):
    """A student (``net``) distilled from the teacher of ``teacher_ckpt``.

    Args:
        teacher_ckpt: the teacher's checkpoint (or run directory), any net with the same classes.
        losses: the distillation losses by name; each reads what its ``needs`` declare.
        ce_weight: γ ≥ 0, the weight of the cross-entropy on the labels.
        teacher_input: ``augmented`` (the teacher sees the student's augmented batch, computed
            live) or ``clean`` (the un-augmented image: its logits are computed once per run;
            only for losses that read the teacher's logits).
        cache_teacher_logits: keep the clean-input logits on disk under ``cache_dir``, keyed by
            the teacher's sha256 and the training images, so sweep jobs share them. Only valid
            with ``teacher_input=clean``: augmented inputs change every epoch.
    """

    def __init__(
        self,
        *args: Any,
        teacher_ckpt: str | None = None,
        losses: dict[str, DistillationLoss] | None = None,
        ce_weight: float = 1.0,
        teacher_input: str = "augmented",
        cache_teacher_logits: bool = False,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if ce_weight < 0:
            raise ConfigError(f"method.ce_weight={ce_weight} must be >= 0 (the weight of CE on the labels)")
        if teacher_input not in ("augmented", "clean"):
            raise ConfigError(f"method.teacher_input={teacher_input} must be 'augmented' or 'clean'")
        if cache_teacher_logits and teacher_input != "clean":
            raise ConfigError(
                "method.cache_teacher_logits=true needs method.teacher_input=clean: on augmented "
                "inputs the teacher's logits change every epoch, so a cache would be wrong"
            )
        if teacher_ckpt is None:
            raise ConfigError(
                "method.teacher_ckpt is not set; pass a teacher checkpoint or pick an experiment "
                "with a teacher stage (e.g. experiment=cifar100_distill)"
            )
        self.losses = nn.ModuleDict(losses or {})
        self.needs = frozenset().union(*(member.needs for member in self.losses.values()))
        if teacher_input == "clean" and self.needs - {LOGITS, INDICES}:
            readers = [name for name, m in self.losses.items() if m.needs - {LOGITS, INDICES}]
            raise ConfigError(
                f"method.teacher_input=clean computes the teacher's logits once, on un-augmented "
                f"images; method.losses {readers} read more of the teacher (features, feature maps) "
                f"on the augmented batch: use method.teacher_input=augmented"
            )
        teacher = open_checkpoint(teacher_ckpt, "method.teacher_ckpt")
        if teacher.contract.num_classes != self.net.num_classes:
            raise CheckpointError(
                f"the teacher {teacher.path} has {teacher.contract.num_classes} classes but the "
                f"student has {self.net.num_classes}; distil on the teacher's classes (data.classes)"
            )
        self.teacher = FrozenNet(build_net(teacher))
        self.teacher_sha256 = teacher.sha256
        for name, member in self.losses.items():
            if FEATURE_MAPS in member.needs:
                check_layers(self.net.backbone, member.layers, f"method.losses.{name}.layers (the student)")
                check_layers(
                    self.teacher.module.backbone,
                    member.reference_layers,
                    f"method.losses.{name}.reference_layers (the teacher)",
                )
        self.ce_weight = ce_weight
        self.teacher_input = teacher_input
        self.cache_teacher_logits = cache_teacher_logits
        self.cache_dir = cache_dir
        self.clean_teacher_logits: torch.Tensor | None = None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.teacher_input == "clean" or INDICES in self.needs:
            self.trainer.datamodule.with_positions()
        for member in self.losses.values():
            member.setup(self.setup_context(stage, self.teacher))

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        for name, member in self.losses.items():  # a member's own parameters (a regressor, heads)
            groups += decay_groups(f"distill_{name}", member.named_parameters())
        return groups

    # --- the objective ---------------------------------------------------------------------------
    def layers(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The student's and the teacher's backbone layers whose feature maps the losses read."""
        readers = [m for m in self.losses.values() if FEATURE_MAPS in m.needs]
        student = tuple(dict.fromkeys(layer for m in readers for layer in m.layers))
        teacher = tuple(dict.fromkeys(layer for m in readers for layer in m.reference_layers))
        return student, teacher

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels, *rest = batch
        positions = rest[0] if rest else None
        student_layers, teacher_layers = self.layers()
        with capture(self.net.backbone, student_layers) as student_maps:
            features = self.net.features(images)
        logits = self.net.head(features)
        inputs = DistillationInputs(
            labels=labels,
            student_logits=logits,
            student_features=features,
            student_maps=student_maps,
            indices=positions,
        )
        if self.teacher_input == "clean":
            inputs.teacher_logits = self.clean_logits(positions, images.device)
        else:
            with capture(self.teacher.module.backbone, teacher_layers) as teacher_maps:
                inputs.teacher_features = self.teacher.features(images)
            inputs.teacher_logits = self.teacher.module.head(inputs.teacher_features)
            inputs.teacher_maps = teacher_maps
        ce = self.criterion(logits, labels)
        terms = {"ce": ce}
        loss = self.ce_weight * ce
        for name, member in self.losses.items():
            terms[name] = member(inputs)
            loss = loss + member.lam * terms[name]
        agreement = (logits.argmax(1) == inputs.teacher_logits.argmax(1)).float().mean()
        self.log(
            "train/teacher_agreement", agreement, on_step=False, on_epoch=True, batch_size=labels.shape[0]
        )
        return {"loss": loss, **terms}, logits, labels

    def evaluate(self, stage: str, batch: Any, dataloader_idx: int) -> Any:
        logits, labels, route = super().evaluate(stage, batch, dataloader_idx)
        correct = (self.teacher(batch[0]).argmax(1) == labels).float().mean()
        self.log(f"{route.prefix}teacher_acc", correct, batch_size=labels.shape[0], sync_dist=True)
        return logits, labels, route

    # --- clean-input teacher logits: computed once, optionally shared on disk ---------------------
    def clean_logits(self, positions: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        assert self.clean_teacher_logits is not None and positions is not None
        return self.clean_teacher_logits[positions.to(self.clean_teacher_logits.device)].to(device)

    def on_fit_start(self) -> None:
        if self.teacher_input != "clean":
            return
        datamodule = self.trainer.datamodule
        cache_file = None
        if self.cache_teacher_logits and self.cache_dir:
            key = f"{self.teacher_sha256[:16]}-{datamodule.train_fingerprint()}"
            cache_file = Path(self.cache_dir) / "teacher_logits" / f"{key}.pt"
        if cache_file is not None and cache_file.is_file():
            logits = torch.load(cache_file, map_location="cpu", weights_only=True)
        else:
            logits = self.compute_clean_logits(datamodule.clean_train_dataset())
            if cache_file is not None and self.trainer.is_global_zero:
                write_tensor_atomic(cache_file, logits)
        self.clean_teacher_logits = logits.to(self.device)

    @torch.no_grad()
    def compute_clean_logits(self, dataset: torch.utils.data.Dataset, batch_size: int = 512) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        return torch.cat([self.teacher(images.to(self.device)).float().cpu() for images, *_ in loader])
