"""Knowledge distillation: a student learns from the labels and from a frozen teacher,

    L = γ·CE(y, s) + Σ_m λ_m·L_m,

one term per member m of the distillation slot (``method.losses``: KD, FitNets, or any
``DistillationLoss``), each with its own weight λ_m (``method.losses.<m>.lam``) and γ
``method.ce_weight``, the way RepDistiller's -r/-a/-b combine them. The module has no loss of its
own: a recipe adds them (``distill=kd``: γ = 0.1 with KD at λ = 0.9, Hinton et al.'s convex mix
(1 − λ)·CE + λ·KD); without one (``distill=none``) it is the student alone, a sweep's control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback
from torch import nn

from transferlab.callbacks.teacher_outputs import CleanTeacherOutputs
from transferlab.data.base import EvalRoute
from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.slot import FEATURE_MAPS, FEATURES, INDICES
from transferlab.methods.accuracy import RunningAccuracy
from transferlab.methods.param_groups import decay_groups
from transferlab.methods.supervised import SupervisedModule
from transferlab.nets.reference import FrozenNet, build_net, capture, check_layers
from transferlab.utils.checkpoint import open_checkpoint
from transferlab.utils.contract import check_handed
from transferlab.utils.errors import ConfigError


class DistillModule(SupervisedModule):
    """A student (``net``) distilled from the teacher of ``teacher_ckpt``.

    Args:
        teacher_ckpt: the teacher's checkpoint (or run directory), any net with the same classes.
        losses: the distillation losses by name; each reads what its ``needs`` declare.
        ce_weight: γ ≥ 0, the weight of the cross-entropy on the labels.
        teacher_input: ``augmented`` (the teacher sees the student's augmented batch, computed
            live), ``clean`` (the un-augmented image: its logits and pooled features are
            computed once per run; refused for losses that read its feature maps, which would be
            those of augmented images and too large to keep) or ``auto`` (clean unless a loss
            reads feature maps: a recipe then runs in any experiment).
        cache_teacher_logits: keep the clean-input logits (and pooled features, where a loss
            reads them) on disk under ``cache_dir``, keyed by the teacher's sha256, the training
            images and what is kept, so sweep jobs share them. Only valid with
            ``teacher_input=clean``: augmented inputs change every epoch.
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
        if teacher_input not in ("augmented", "clean", "auto"):
            raise ConfigError(f"method.teacher_input={teacher_input} must be 'augmented', 'clean' or 'auto'")
        self.losses = nn.ModuleDict(losses or {})
        self.needs = frozenset().union(*(member.needs for member in self.losses.values()))
        if teacher_input == "auto":  # the cache follows: it is kept only for clean inputs
            teacher_input = "augmented" if FEATURE_MAPS in self.needs else "clean"
            cache_teacher_logits = cache_teacher_logits and teacher_input == "clean"
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
        if teacher_input == "clean" and FEATURE_MAPS in self.needs:
            readers = [name for name, m in self.losses.items() if FEATURE_MAPS in m.needs]
            raise ConfigError(
                f"method.teacher_input=clean keeps the teacher's logits and pooled features of the "
                f"un-augmented images; method.losses {readers} read its feature maps, which are "
                f"neither: use method.teacher_input=augmented"
            )
        teacher = open_checkpoint(teacher_ckpt, "method.teacher_ckpt")
        check_handed(teacher.contract, self.contract, "teacher", f"method.teacher_ckpt={teacher.path}")
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
        self.clean_teacher: dict[str, torch.Tensor] = {}  # teacher_input=clean: logits, features
        self.teacher_agreement = RunningAccuracy(self.net.num_classes, top5=False)

    @property
    def transfer_term_off(self) -> bool:
        """No distillation loss with λ > 0: the student alone, the control of a recipe sweep."""
        return not any(member.lam > 0 for member in self.losses.values())

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.teacher_input == "clean" or INDICES in self.needs:
            self.trainer.datamodule.with_positions()
        for name, member in self.losses.items():
            try:
                member.setup(self.setup_context(stage, self.teacher))
            except ValueError as err:  # a setting the data cannot satisfy: name the key
                raise ConfigError(f"method.losses.{name}: {err}") from None

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

    def run_epochs(self) -> int:
        """The run's length in epochs (from its steps where it is set by ``max_steps``)."""
        if self._trainer is None:
            return 1
        if self.trainer.max_epochs and self.trainer.max_epochs > 0:
            return int(self.trainer.max_epochs)
        per_epoch = max(int(self.trainer.num_training_batches), 1)
        return max(int(self.trainer.estimated_stepping_batches) // per_epoch, 1)

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
            epoch=self.current_epoch if self._trainer is not None else 0,
            epochs=self.run_epochs(),
        )
        if self.teacher_input == "clean":
            kept = self.clean_outputs(positions, images.device)
            inputs.teacher_logits, inputs.teacher_features = kept["logits"], kept.get("features")
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
        # how often the student's top class is the teacher's: counted on the device, logged per epoch
        self.teacher_agreement.update(logits.detach(), inputs.teacher_logits.detach().argmax(1))
        return {"loss": loss, **terms}, logits, labels

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        agreement = self.epoch_values(self.teacher_agreement)
        if agreement:
            self.log("train/teacher_agreement", agreement["acc"])

    def validation_metric_names(self, routes: Sequence[EvalRoute]) -> set[str]:
        return super().validation_metric_names(routes) | {
            f"{route.prefix}teacher_acc" for route in routes if not route.report
        }

    def evaluate(self, stage: str, batch: Any, dataloader_idx: int) -> Any:
        logits, labels, route = super().evaluate(stage, batch, dataloader_idx)
        correct = (self.teacher(batch[0]).argmax(1) == labels).float().mean()
        self.log(f"{route.prefix}teacher_acc", correct, batch_size=labels.shape[0], sync_dist=True)
        return logits, labels, route

    # --- clean-input teacher outputs: computed once (CleanTeacherOutputs), optionally shared on disk
    def clean_outputs(self, positions: torch.Tensor | None, device: torch.device) -> dict[str, torch.Tensor]:
        """The teacher's kept outputs (logits; pooled features where a loss reads them) of the
        batch's images, looked up by their positions in the training split."""
        assert self.clean_teacher and positions is not None
        return {k: v[positions.to(v.device)].to(device) for k, v in self.clean_teacher.items()}

    def handed_callbacks(self) -> list[Callback]:
        if self.teacher_input != "clean":
            return super().handed_callbacks()
        kept = ("logits", "features") if FEATURES in self.needs else ("logits",)
        cache_dir = self.cache_dir if self.cache_teacher_logits else None
        return [*super().handed_callbacks(), CleanTeacherOutputs(kept, cache_dir, self.teacher_sha256)]

    @torch.no_grad()
    def compute_clean_outputs(
        self, dataset: torch.utils.data.Dataset, kept: tuple[str, ...] = ("logits",), batch_size: int = 512
    ) -> dict[str, torch.Tensor]:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None:  # resident on the device where it fits: no per-image work
            loader = datamodule.inference_loader(dataset, batch_size, self.device)
        else:
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in kept}
        for images, *_ in loader:
            features = self.teacher.features(images.to(self.device))
            outputs = {"features": features, "logits": self.teacher.module.head(features)}
            for k in kept:
                parts[k].append(outputs[k].float().cpu())
        return {k: torch.cat(v) for k, v in parts.items()}
