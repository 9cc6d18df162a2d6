"""Domain adaptation: a labelled source domain, an unlabelled target domain with the same classes,
and optionally a few labelled target images. Every method here minimises

    L = CE(y_s, f(x_s)) + λ_t·CE(y_t, f(x_t^l)) + λ·A(f_s, f_t, logits_s, logits_t)

and differs only in its alignment term A (``alignment_loss``). λ = 0, or ``method=source_only``,
drops A; with labelled target images and no A this is the article's joint training,
min Σ L_t(θ; x_t, y_t) + λ'·Σ L_s(θ; x_s, y_s), with λ' = 1/λ_t (the same minimiser).

This base owns the rest: one forward pass over the source, target and labelled-target images
(BatchNorm statistics are shared across domains), the CE terms, and evaluation routed by loader
name: validation on the source's validation split (``val/acc``, model selection: no target label
is used) and on the target's test split (``val/target_acc``, reported only); test on the target
(``test/acc``, what adaptation is judged by) and the source (``test/source_acc``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transferlab.losses.domain import annealed_lr_factor, grl_coefficient
from transferlab.methods.base import ClassificationModule, accuracy_metrics, decay_groups
from transferlab.utils.checkpoint import load_backbone
from transferlab.utils.errors import ConfigError

# (stage, domain) -> metric prefix: selection on the source, the verdict on the target
EVALUATION_PREFIX = {
    ("val", "source"): "val/",
    ("val", "target"): "val/target_",
    ("test", "target"): "test/",
    ("test", "source"): "test/source_",
}


class AnnealedLR(torch.optim.lr_scheduler.LRScheduler):
    """μ_p = μ_0 / (1 + a·p)^b with p = step / total_steps (step it every optimiser step);
    Ganin & Lempitsky's a = 10 (``decay_rate``), b = 0.75 (``decay_power``)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        decay_rate: float = 10.0,
        decay_power: float = 0.75,
    ) -> None:
        self.total_steps, self.decay_rate, self.decay_power = max(total_steps, 1), decay_rate, decay_power
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        progress = min(self.last_epoch / self.total_steps, 1.0)
        factor = annealed_lr_factor(progress, self.decay_rate, self.decay_power)
        return [base_lr * factor for base_lr in self.base_lrs]


class DomainAdaptationModule(ClassificationModule):
    """The shared protocol; a method overrides ``alignment_loss`` (and adds its own modules).

    Args:
        lam: λ ≥ 0, the weight of the alignment term A; 0 trains on the labels alone.
        labelled_target_weight: λ_t ≥ 0, the weight of CE on the labelled target images (when
            the data has some: ``data.target_labelled_per_class``).
        source_ckpt: start from a source model's backbone (a checkpoint or its run directory;
            set by a pipeline's pretraining stage); None starts from scratch.
    """

    #: whether the unlabelled target images go through the net (source-only training skips them)
    uses_unlabelled_target = True

    def __init__(
        self,
        *args: Any,
        lam: float = 1.0,
        labelled_target_weight: float = 1.0,
        source_ckpt: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if source_ckpt is not None:
            load_backbone(self.net, source_ckpt, self.metadata.get("net", {}), "method.source_ckpt")
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 trains on the labels alone)")
        if labelled_target_weight < 0:
            raise ConfigError(f"method.labelled_target_weight={labelled_target_weight} must be >= 0")
        self.lam = lam
        self.labelled_target_weight = labelled_target_weight
        self.criterion = nn.CrossEntropyLoss()
        num_classes = self.net.num_classes
        self.val_target_metrics = accuracy_metrics(num_classes, EVALUATION_PREFIX["val", "target"])
        self.test_source_metrics = accuracy_metrics(num_classes, EVALUATION_PREFIX["test", "source"])

    # --- what a method writes ----------------------------------------------------------------------
    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        """A(f_s, f_t, logits_s, logits_t): features (N, D) and logits (N, K) of each domain's
        batch; returns a 0-d tensor. Diagnostics may be logged with ``self.log``."""
        raise NotImplementedError

    # --- training ----------------------------------------------------------------------------------
    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        if not (isinstance(batch, dict) and "source" in batch and "target" in batch):
            raise ConfigError(
                f"{type(self).__name__} trains on a domain pair (batches with 'source' and 'target'); "
                f"pick pair data, e.g. data=mnist_usps_offline or data=digits_blended_pair"
            )
        source_images, source_labels = batch["source"]
        parts = {"source": source_images}
        if self.uses_unlabelled_target:
            parts["target"] = batch["target"]  # images only: the datamodule never hands out their labels
        labelled = batch.get("target_labelled")
        if labelled is not None:
            parts["target_labelled"] = labelled[0]
        features = self.net.features(torch.cat(list(parts.values())))
        logits = self.net.head(features)
        sizes = [images.shape[0] for images in parts.values()]
        f = dict(zip(parts, features.split(sizes), strict=True))
        z = dict(zip(parts, logits.split(sizes), strict=True))

        ce = self.criterion(z["source"], source_labels)
        terms = {"ce": ce}
        loss = ce
        if labelled is not None:
            terms["target_ce"] = self.criterion(z["target_labelled"], labelled[1])
            loss = loss + self.labelled_target_weight * terms["target_ce"]
        if self.uses_unlabelled_target:
            terms["alignment"] = self.alignment_loss(f["source"], f["target"], z["source"], z["target"])
            loss = loss + self.lam * terms["alignment"]
        return {"loss": loss, **terms}, z["source"], source_labels

    # --- evaluation, routed by loader name -----------------------------------------------------------
    def loader_name(self, stage: str, dataloader_idx: int) -> str:
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        if not isinstance(loaders, dict):
            raise ConfigError(
                f"{type(self).__name__} evaluates named 'source' and 'target' loaders; "
                f"pick pair data, e.g. data=mnist_usps_offline"
            )
        return list(loaders)[dataloader_idx]

    def evaluate_domain(self, stage: str, batch: Any, dataloader_idx: int) -> None:
        prefix = EVALUATION_PREFIX[stage, self.loader_name(stage, dataloader_idx)]
        metrics = {
            "val/": self.val_metrics,
            "val/target_": self.val_target_metrics,
            "test/": self.test_metrics,
            "test/source_": self.test_source_metrics,
        }[prefix]
        logits, labels = self.evaluate_batch(batch, metrics, f"{prefix}loss")
        if prefix == "test/":  # the confusion matrix is the target's
            self.test_confusion.update(logits, labels)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_domain("val", batch, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate_domain("test", batch, dataloader_idx)


class AdversarialAdaptationModule(DomainAdaptationModule):
    """Alignment by a domain discriminator behind a gradient-reversal layer (DANN, CDAN).

    A subclass builds ``self.domain_adversarial`` (the discriminator and its loss); this class
    drives the reversal coefficient c(p), logs the discriminator's accuracy, and gives the
    discriminator its own optimiser groups. ``adversarial_loss`` feeds the discriminator the
    features (DANN); a method that conditions it on more (CDAN) overrides it.

    Args:
        gamma, schedule: c(p) = 2/(1 + exp(−γp)) − 1 over training progress p (``ganin``), or
            c = 1 from the first step (``fixed``).
    """

    domain_adversarial: nn.Module

    def __init__(self, *args: Any, gamma: float = 10.0, schedule: str = "ganin", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if schedule not in ("ganin", "fixed"):
            raise ConfigError(f"method.schedule={schedule} must be 'ganin' or 'fixed'")
        self.gamma, self.schedule = gamma, schedule

    def progress(self) -> float:
        """p in [0, 1], from the global step: right after a resume and on every DDP rank."""
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return min(self.global_step / total, 1.0)

    def grl_coefficient(self) -> float:
        """c(p), the gradient-reversal coefficient at this step."""
        return 1.0 if self.schedule == "fixed" else grl_coefficient(self.progress(), self.gamma)

    def adversarial_loss(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the domain loss through a reversal of ``coefficient``, the discriminator's accuracy)."""
        return self.domain_adversarial(f_s, f_t, coefficient)

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        coefficient = self.grl_coefficient()
        loss, domain_acc = self.adversarial_loss(f_s, f_t, logits_s, logits_t, coefficient)
        self.log_dict(
            {"train/domain_acc": domain_acc, "train/grl_coefficient": coefficient},
            on_step=False,
            on_epoch=True,
            batch_size=f_s.shape[0],
        )
        return loss

    def parameter_groups(self) -> list[dict[str, Any]]:
        return super().parameter_groups() + decay_groups(
            "discriminator", self.domain_adversarial.named_parameters()
        )


class SourceOnlyModule(DomainAdaptationModule):
    """No alignment: CE on the source labels (+ λ_t·CE on labelled target images, the article's
    joint training). The baseline every adaptation method must beat. The unlabelled target
    images are not used at all."""

    uses_unlabelled_target = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "lam" in kwargs:
            raise ConfigError(
                "method=source_only has no alignment term for method.lam to weigh; drop it, "
                "or pick an adaptation method (method=dann, cdan, cdan_e, dan, coral)"
            )
        super().__init__(*args, lam=0.0, **kwargs)
