"""Knowledge distillation: L = (1 − λ)·CE(y, s) + λ·T²·KL(softmax(t/T) ‖ softmax(s/T)) [+ w_h·hint].

s are the student's logits, t the frozen teacher's. λ (``lam``) is the weight of the soft targets,
in [0, 1] (Hinton et al.'s convex combination). The article's form CE + λ'·T²·KL is the same
objective scaled by 1/(1 − λ): use λ = λ'/(1 + λ') and multiply the learning rate by 1 + λ'.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from transferlab.losses.distillation import HintLoss, KDLoss
from transferlab.methods.base import decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.utils.checkpoint import (
    build_net,
    checkpoint_metadata,
    load_checkpoint,
    resolve_source_checkpoint,
    sha256,
    verify_manifest,
)
from transferlab.utils.errors import CheckpointError, ConfigError
from transferlab.utils.run_files import write_tensor_atomic


class DistillModule(SupervisedModule):
    """A student (``net``) learns from the labels and from a frozen teacher's softened outputs.

    Args:
        teacher_ckpt: the teacher's checkpoint (or run directory), any net with the same classes.
        temperature: T > 0, the softmax temperature of both distributions in the KD term.
        lam: λ in [0, 1], the weight of the KD term; 0 is the student alone.
        hint_weight: w_h ≥ 0, the weight of a FitNets hint on ``features()`` (0: off).
        teacher_input: ``augmented`` (the teacher sees the student's augmented batch, computed
            live) or ``clean`` (the un-augmented image: its logits are computed once per run).
        cache_teacher_logits: keep the clean-input logits on disk under ``cache_dir``, keyed by
            the teacher's sha256 and the training images, so sweep jobs share them. Only valid
            with ``teacher_input=clean``: augmented inputs change every epoch.
    """

    def __init__(
        self,
        *args: Any,
        teacher_ckpt: str | None = None,
        temperature: float = 4.0,
        lam: float = 0.9,
        hint_weight: float = 0.0,
        teacher_input: str = "augmented",
        cache_teacher_logits: bool = False,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if temperature <= 0:
            raise ConfigError(f"method.temperature={temperature} must be > 0 (try 4)")
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"method.lam={lam} must be in [0, 1] (the weight of the KD term)")
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
        self.teacher, self.teacher_sha256 = self._load_teacher(teacher_ckpt)
        self.kd_loss = KDLoss(temperature)
        self.lam = lam
        self.hint_weight = hint_weight
        self.hint = HintLoss(self.net.feature_dim, self.teacher.feature_dim) if hint_weight > 0 else None
        self.teacher_input = teacher_input
        self.cache_teacher_logits = cache_teacher_logits
        self.cache_dir = cache_dir
        self.clean_teacher_logits: torch.Tensor | None = None

    def _load_teacher(self, path: str) -> tuple[nn.Module, str]:
        path = resolve_source_checkpoint(path, "method.teacher_ckpt")
        verify_manifest(path)
        checkpoint = load_checkpoint(path, "method.teacher_ckpt")
        metadata = checkpoint_metadata(checkpoint, path)
        if metadata["num_classes"] != self.net.num_classes:
            raise CheckpointError(
                f"the teacher {path} has {metadata['num_classes']} classes but the student has "
                f"{self.net.num_classes}; distil on the teacher's classes (data.classes)"
            )
        teacher = build_net(checkpoint, path).eval()
        teacher.requires_grad_(False)
        return teacher, sha256(path)

    # --- the teacher stays frozen: no gradients, eval mode, not in the student's checkpoint ---
    def train(self, mode: bool = True) -> DistillModule:
        super().train(mode)
        self.teacher.eval()
        return self

    def on_train_epoch_start(self) -> None:
        self.teacher.eval()  # Lightning restores module modes after validation by attribute

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the teacher comes from its own checkpoint, not from the student's
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.hint is not None:
            groups += decay_groups("hint_regressor", self.hint.named_parameters())
        return groups

    # --- the objective ---------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_logits(self, images: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
        if self.teacher_input == "clean":
            assert self.clean_teacher_logits is not None and positions is not None
            return self.clean_teacher_logits[positions.to(self.clean_teacher_logits.device)].to(images.device)
        return self.teacher(images)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        images, labels, *rest = batch
        positions = rest[0] if rest else None
        features = self.net.features(images)
        logits = self.net.head(features)
        teacher_logits = self.teacher_logits(images, positions)
        ce = self.criterion(logits, labels)
        kd = self.kd_loss(logits, teacher_logits)
        terms = {"ce": ce, "kd": kd, "loss": (1 - self.lam) * ce + self.lam * kd}
        if self.hint is not None:
            with torch.no_grad():
                teacher_features = self.teacher.features(images)
            terms["hint"] = self.hint(features, teacher_features)
            terms["loss"] = terms["loss"] + self.hint_weight * terms["hint"]
        agreement = (logits.argmax(1) == teacher_logits.argmax(1)).float().mean()
        self.log(
            "train/teacher_agreement", agreement, on_step=False, on_epoch=True, batch_size=labels.shape[0]
        )
        return terms, logits, labels

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self._log_teacher_accuracy(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        self._log_teacher_accuracy(batch, "test")

    def _log_teacher_accuracy(self, batch: Any, prefix: str) -> None:
        images, labels = batch[:2]
        correct = (self.teacher(images).argmax(1) == labels).float().mean()
        self.log(f"{prefix}/teacher_acc", correct, batch_size=labels.shape[0], sync_dist=True)

    # --- clean-input teacher logits: computed once, optionally shared on disk ---------------------
    def on_fit_start(self) -> None:
        if self.teacher_input != "clean":
            return
        datamodule = self.trainer.datamodule
        datamodule.datasets["train"].with_index = True
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
        return torch.cat([self.teacher(images.to(self.device)).float().cpu() for images, _ in loader])
