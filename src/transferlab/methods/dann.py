"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015):

    L = CE(y_s, f(x_s)) + BCE(d(R_λ(features(x))), domain),   x over source and target batches

R_λ is the gradient-reversal layer: the discriminator d learns to tell the domains apart while
the reversed gradient, scaled by λ(p) = λ·(2 / (1 + exp(−γp)) − 1), trains the features to
make them indistinguishable. λ = 0 is the source-only baseline. Target labels are never used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from transferlab.losses.domain import annealed_lr_factor, grl_coefficient, reverse_gradient
from transferlab.methods.base import ClassificationModule, accuracy_metrics, decay_groups
from transferlab.nets.discriminator import domain_discriminator
from transferlab.utils.errors import ConfigError


class AnnealedLR(torch.optim.lr_scheduler.LRScheduler):
    """μ_p = μ_0 / (1 + α·p)^β with p = step / total_steps (step it every optimiser step)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, total_steps: int, alpha: float = 10.0, beta: float = 0.75
    ) -> None:
        self.total_steps, self.alpha, self.beta = max(total_steps, 1), alpha, beta
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        progress = min(self.last_epoch / self.total_steps, 1.0)
        factor = annealed_lr_factor(progress, self.alpha, self.beta)
        return [base_lr * factor for base_lr in self.base_lrs]


class DANNModule(ClassificationModule):
    """Args:
    lam: λ ≥ 0, the scale of the reversed gradient; 0 is the source-only baseline.
    gamma: γ of the schedule λ(p); ``schedule=fixed`` uses λ from the first step.
    discriminator_hidden, discriminator_layers, discriminator_dropout: the discriminator MLP.
    """

    def __init__(
        self,
        *args: Any,
        lam: float = 1.0,
        gamma: float = 10.0,
        schedule: str = "ganin",
        discriminator_hidden: int = 1024,
        discriminator_layers: int = 2,
        discriminator_dropout: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if lam < 0:
            raise ConfigError(f"method.lam={lam} must be >= 0 (λ = 0 is the source-only baseline)")
        if schedule not in ("ganin", "fixed"):
            raise ConfigError(f"method.schedule={schedule} must be 'ganin' or 'fixed'")
        self.lam, self.gamma, self.schedule = lam, gamma, schedule
        self.discriminator = domain_discriminator(
            self.net.feature_dim, discriminator_hidden, discriminator_layers, discriminator_dropout
        )
        self.criterion = nn.CrossEntropyLoss()
        self.domain_criterion = nn.BCEWithLogitsLoss()
        self.val_target_metrics = accuracy_metrics(self.net.num_classes, "val/target_")
        self.test_source_metrics = accuracy_metrics(self.net.num_classes, "test/source_")

    def progress(self) -> float:
        """p in [0, 1], from the global step: right after a resume and on every DDP rank."""
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        return min(self.global_step / total, 1.0)

    def grl_coefficient(self) -> float:
        if self.schedule == "fixed":
            return self.lam
        return self.lam * grl_coefficient(self.progress(), self.gamma)

    def training_loss(self, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        source_images, source_labels = batch["source"]
        target_images = batch["target"]  # images only: the datamodule never hands out target labels
        features = self.net.features(torch.cat([source_images, target_images]))
        n_source = source_images.shape[0]
        logits = self.net.head(features[:n_source])
        ce = self.criterion(logits, source_labels)
        coefficient = self.grl_coefficient()
        domain_logits = self.discriminator(reverse_gradient(features, coefficient)).squeeze(1)
        domain = torch.cat([torch.zeros(n_source), torch.ones(target_images.shape[0])]).to(domain_logits)
        domain_loss = self.domain_criterion(domain_logits, domain)
        domain_acc = ((domain_logits > 0).float() == domain).float().mean()
        self.log_dict(
            {"train/domain_acc": domain_acc, "train/grl_coefficient": coefficient},
            on_step=False,
            on_epoch=True,
            batch_size=n_source,
        )
        return {"loss": ce + domain_loss, "ce": ce, "domain_loss": domain_loss}, logits, source_labels

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:  # the source's validation split: model selection
            self.evaluate_batch(batch, self.val_metrics, "val/loss")
        else:  # the target's test split, reported only
            self.evaluate_batch(batch, self.val_target_metrics, "val/target_loss")

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx == 0:  # the target: the accuracy domain adaptation is judged by
            self.test_confusion.update(*self.evaluate_batch(batch, self.test_metrics, "test/loss"))
        else:
            self.evaluate_batch(batch, self.test_source_metrics, "test/source_loss")

    def parameter_groups(self) -> list[dict[str, Any]]:
        return super().parameter_groups() + decay_groups(
            "discriminator", self.discriminator.named_parameters()
        )
