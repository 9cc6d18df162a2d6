"""Domain adaptation: a labelled source domain, an unlabelled target domain with the same classes,
and optionally a few labelled target images. Every method here minimises

    L = CE(y_s, f(x_s)) + λ_t·CE(y_t, f(x_t^l)) + λ·A(f_s, f_t, logits_s, logits_t)

and differs only in its alignment term A (``alignment_loss``). λ = 0, or ``method=source_only``,
drops A; with labelled target images and no A this is the article's joint training,
min Σ L_t(θ; x_t, y_t) + λ'·Σ L_s(θ; x_s, y_s), with λ' = 1/λ_t (the same minimiser).

This base owns the rest: one forward pass over the source, target and labelled-target images
(BatchNorm statistics are shared across domains) and the CE terms. Evaluation follows the domain
pair's routes (``DomainPairDataModule.evaluation_routes``), like every method's, and at the end of
each validation epoch the family's validators (``method.validators``: model selection without
target labels, and the oracle beside them) score the epoch's source and target validation outputs
(``val/validator/<name>``); each validated epoch is also written to ``selection.jsonl`` with the
target's test accuracy (a ``SelectionRecord`` the module hands the trainer), for the sweep's
model-selection report only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback
from torch import nn

from transferlab.callbacks.selection import SelectionRecord
from transferlab.data.base import EvalRoute
from transferlab.losses.domain import reversal_warmup
from transferlab.methods.base import ClassificationModule
from transferlab.methods.param_groups import decay_groups
from transferlab.nets.reference import load_source
from transferlab.utils.errors import ConfigError
from transferlab.utils.selection import TEST_KEY, VALIDATOR_PREFIX
from transferlab.validators.base import ValidationOutputs, Validator


class DomainAdaptationModule(ClassificationModule):
    """The shared protocol; a method overrides ``alignment_loss`` (and adds its own modules).

    Args:
        lam: λ ≥ 0, the weight of the alignment term A; 0 trains on the labels alone.
        labelled_target_weight: λ_t ≥ 0, the weight of CE on the labelled target images (when
            the data has some: ``data.target_labelled_per_class``).
        source_ckpt: start from a source model's backbone (a checkpoint or its run directory;
            set by a pipeline's pretraining stage); None starts from scratch.
        validators: the validators by name, each logged as ``val/validator/<name>`` at every
            validation epoch (``select=<name>`` picks the checkpoint by one).
        start_epoch: epochs of training on the labels alone before λ·A joins (the CDAN digits
            protocol's 1); 0: from the first step.
        backbone_lr_mult: the backbone's learning rate relative to the rest (the bottleneck, the
            head, a discriminator): the reference library's 0.1 for an ImageNet backbone.
    """

    #: whether the unlabelled target images go through the net (source-only training skips them)
    uses_unlabelled_target = True

    def __init__(
        self,
        *args: Any,
        lam: float = 1.0,
        labelled_target_weight: float = 1.0,
        start_epoch: int = 0,
        source_ckpt: str | None = None,
        validators: dict[str, Validator] | None = None,
        backbone_lr_mult: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if backbone_lr_mult < 0:
            raise ConfigError(f"method.backbone_lr_mult={backbone_lr_mult} must be >= 0")
        self.backbone_lr_mult = backbone_lr_mult
        self.source = load_source(self.net, source_ckpt, self.contract)
        self.validators = dict(validators or {})
        self.validation_record: dict[str, Any] | None = None  # the last validation's, for SelectionRecord
        self.validation_outputs: dict[str, list[tuple[torch.Tensor, ...]]] = {"source": [], "target": []}
        self.validator_seconds: dict[str, list[float]] = {name: [] for name in self.validators}
        self._pending: tuple[str, torch.Tensor, torch.Tensor] | None = None
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 trains on the labels alone)")
        if labelled_target_weight < 0:
            raise ConfigError(f"method.labelled_target_weight={labelled_target_weight} must be >= 0")
        if start_epoch < 0:
            raise ConfigError(f"method.start_epoch={start_epoch} must be >= 0")
        self.lam = lam
        self.start_epoch = start_epoch
        self.labelled_target_weight = labelled_target_weight
        self.criterion = nn.CrossEntropyLoss()

    # --- what a method writes ----------------------------------------------------------------------
    @property
    def transfer_term_off(self) -> bool:
        """λ = 0 (source only): the control of an adaptation sweep."""
        return self.lam == 0

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        """A(f_s, f_t, logits_s, logits_t): features (N, D) and logits (N, K) of each domain's
        batch; returns a 0-d tensor. Diagnostics may be logged with ``self.log``."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The backbone at ``backbone_lr_mult`` × the learning rate, the rest of the net (a
        bottleneck, the head) at the full rate; a method adds its own modules' groups."""
        if self.backbone_lr_mult == 1.0:
            return super().parameter_groups()
        backbone = decay_groups(
            "backbone", self.net.backbone.named_parameters(), lr_scale=self.backbone_lr_mult
        )
        rest = [(n, p) for n, p in self.net.named_parameters() if not n.startswith("backbone.")]
        return backbone + decay_groups("net", rest)

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
            loss = loss + self.alignment_weight() * terms["alignment"]
        return {"loss": loss, **terms}, z["source"], source_labels

    def alignment_weight(self) -> float:
        """λ, once ``start_epoch`` epochs of training on the labels alone are over; 0 before."""
        started = self._trainer is None or self.current_epoch >= self.start_epoch
        return self.lam if started else 0.0

    # --- validation: the validators' inputs, gathered per epoch -------------------------------
    def evaluation_forward(self, route: EvalRoute, images: torch.Tensor) -> torch.Tensor:
        if not (self.validators and route.split == "val" and route.domain in self.validation_outputs):
            return self(images)
        features = self.net.features(images)
        logits = self.net.head(features)
        self._pending = (route.domain, logits.detach(), features.detach())
        return logits

    def evaluate(self, stage: str, batch: Any, dataloader_idx: int) -> Any:
        self._pending = None
        logits, labels, route = super().evaluate(stage, batch, dataloader_idx)
        if self._pending is not None:
            domain, logits, features = self._pending
            self.validation_outputs[domain].append((logits, features, labels.detach()))
        return logits, labels, route

    def on_validation_epoch_start(self) -> None:
        self.validation_outputs = {"source": [], "target": []}

    def gathered(self, domain: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The domain's validation logits, features and labels of this epoch, from every rank."""
        parts = self.validation_outputs[domain]
        logits, features, labels = (torch.cat([p[i] for p in parts]) for i in range(3))
        if self.trainer.world_size > 1:
            logits, features, labels = (self.all_gather(t).flatten(0, 1) for t in (logits, features, labels))
        return logits, features, labels

    def validation_metric_names(self, routes: Sequence[EvalRoute]) -> set[str]:
        return super().validation_metric_names(routes) | {f"{VALIDATOR_PREFIX}{n}" for n in self.validators}

    def on_validation_epoch_end(self) -> None:
        reports = self.reported_metrics("val")
        if self.trainer.sanity_checking or not self.validators:
            return
        if not (self.validation_outputs["source"] and self.validation_outputs["target"]):
            return
        source, target = self.gathered("source"), self.gathered("target")
        outputs = ValidationOutputs(*source, *target)
        scores = {}
        for name, validator in self.validators.items():
            start = time.perf_counter()
            seen = outputs if validator.uses_target_labels else outputs.without_target_labels()
            scores[name] = float(validator.score(seen))
            self.validator_seconds[name].append(time.perf_counter() - start)
        self.log_dict({f"{VALIDATOR_PREFIX}{k}": v for k, v in scores.items()}, sync_dist=False)
        self.validation_record = {"epoch": self.current_epoch, "step": self.global_step, "validators": scores}
        if "report/target_test_acc" in reports:  # for the sweep's selection report, never a selection
            self.validation_record[TEST_KEY] = reports["report/target_test_acc"]

    def handed_callbacks(self) -> list[Callback]:
        return [*super().handed_callbacks(), SelectionRecord()]


class AdversarialAdaptationModule(DomainAdaptationModule):
    """Alignment by a domain discriminator behind a gradient-reversal layer (DANN, CDAN).

    A subclass builds ``self.domain_adversarial`` (the discriminator and its loss); this class
    drives the reversal coefficient c (``reversal_coefficient``), logs the discriminator's
    accuracy, and gives the discriminator its own optimiser groups. ``adversarial_loss`` feeds
    the discriminator the features (DANN), and the logits too where ``adversary_reads_logits``
    (CDAN's conditioning, MDD's auxiliary head).

    Args:
        gamma, schedule: c(p) = 2/(1 + exp(−γp)) − 1 over training progress p (``ganin``), γ ≥ 0,
            or c = 1 from the first step (``fixed``).
        warmup: the warm-up's length as a fraction of the run, so a protocol keeps its shape on a
            subset of its data: p = (steps since the origin) / (``warmup`` × the run's steps from
            the origin), capped at 1. 1.0 (Ganin et al.): c reaches ≈ 1 at the end of the run.
        warmup_from: the origin of p: ``alignment`` (the step the alignment starts, ``start_epoch``)
            or ``run`` (the run's first step, as the authors' CDAN and MDD code count: their
            coefficient is already above 0 when the alignment joins after an epoch).
    """

    domain_adversarial: nn.Module
    #: whether ``domain_adversarial`` also takes (logits_s, logits_t)
    adversary_reads_logits = False

    def __init__(
        self,
        *args: Any,
        gamma: float = 10.0,
        schedule: str = "ganin",
        warmup: float = 1.0,
        warmup_from: str = "alignment",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if schedule not in ("ganin", "fixed"):
            raise ConfigError(f"method.schedule={schedule} must be 'ganin' or 'fixed'")
        if gamma < 0:
            raise ConfigError(
                f"method.gamma={gamma} must be >= 0: a negative γ makes c(p) negative, so the features "
                f"would help the discriminator instead of fooling it (Ganin's γ is 10)"
            )
        if not warmup > 0:
            raise ConfigError(
                f"method.warmup={warmup} must be > 0: the warm-up's length as a fraction of the run "
                f"(1.0: c reaches ≈ 1 at the run's end; method.schedule=fixed for c = 1 throughout)"
            )
        if warmup_from not in ("alignment", "run"):
            raise ConfigError(f"method.warmup_from={warmup_from} must be 'alignment' or 'run'")
        self.gamma, self.schedule = gamma, schedule
        self.warmup, self.warmup_from = warmup, warmup_from

    def progress(self) -> float:
        """p in [0, 1], from the global step (right after a resume and on every DDP rank), counted
        from ``warmup_from`` over ``warmup`` × the run's steps from there."""
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        before = (
            min(self.start_epoch * int(self.trainer.num_training_batches), total) if self.start_epoch else 0
        )
        origin = before if self.warmup_from == "alignment" else 0
        span = max(self.warmup * (total - origin), 1.0)
        return min(max(self.global_step - origin, 0) / span, 1.0)

    def reversal_coefficient(self) -> float:
        """c, the gradient-reversal coefficient at this step."""
        return 1.0 if self.schedule == "fixed" else reversal_warmup(self.progress(), self.gamma)

    def adversarial_loss(
        self,
        f_s: torch.Tensor,
        f_t: torch.Tensor,
        logits_s: torch.Tensor,
        logits_t: torch.Tensor,
        coefficient: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the domain loss through a reversal of ``coefficient``, the discriminator's accuracy);
        the logits go to an adversary that reads them (``adversary_reads_logits``)."""
        if self.adversary_reads_logits:
            return self.domain_adversarial(f_s, f_t, logits_s, logits_t, coefficient)
        return self.domain_adversarial(f_s, f_t, coefficient)

    def alignment_loss(
        self, f_s: torch.Tensor, f_t: torch.Tensor, logits_s: torch.Tensor, logits_t: torch.Tensor
    ) -> torch.Tensor:
        coefficient = self.reversal_coefficient()
        loss, domain_acc = self.adversarial_loss(f_s, f_t, logits_s, logits_t, coefficient)
        self.log_dict(
            {"train/domain_acc": domain_acc, "train/reversal_coefficient": coefficient},
            on_step=False,
            on_epoch=True,
            batch_size=f_s.shape[0],
        )
        return loss

    def parameter_groups(self) -> list[dict[str, Any]]:
        return super().parameter_groups() + decay_groups(
            "discriminator", self.domain_adversarial.named_parameters()
        )
