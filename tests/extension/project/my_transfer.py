"""A researcher's own members of the seven families, outside the package: one file of code."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from transferlab.losses.distillation.base import DistillationInputs, DistillationLoss
from transferlab.losses.regularizers.base import Regularizer, RegularizerInputs
from transferlab.losses.slot import FEATURE_MAPS, FEATURES, SetupContext
from transferlab.methods.adaptation.base import DomainAdaptationModule
from transferlab.peft.base import ParameterEfficient
from transferlab.transferability.base import FEATURES as SCORE_FEATURES
from transferlab.transferability.base import TransferabilityScore
from transferlab.tta.base import TestTimeAdaptation, batchnorm_layers
from transferlab.validators.base import ValidationOutputs, Validator


class MeanMatchingModule(DomainAdaptationModule):
    """Domain adaptation: A = ‖mean_s f − mean_t f‖², the MMD of a linear kernel."""

    def alignment_loss(self, f_s, f_t, logits_s, logits_t) -> torch.Tensor:
        return (f_s.mean(0) - f_t.mean(0)).pow(2).sum()


class FeatureAnchor(Regularizer):
    """Fine-tuning: R = ‖mean_batch f − μ_s‖², μ_s the source net's mean feature on training
    images, measured once in ``setup``."""

    needs = frozenset({FEATURES})

    def __init__(self, images: int = 64) -> None:
        super().__init__()
        self.images = images
        self.register_buffer("source_mean", torch.zeros(0))

    def setup(self, context: SetupContext) -> None:
        if context.stage == "fit":
            x, _ = context.training_sample(self.images)
            self.source_mean = context.reference(x.to(context.device)).flatten(1).mean(0)

    def forward(self, inputs: RegularizerInputs) -> torch.Tensor:
        return (inputs.features.mean(0) - self.source_mean).pow(2).sum()


class SpatialEnergy(DistillationLoss):
    """Distillation: Σ_j ‖e_s − e_t‖² / N, e = the L2-normalised map of mean squared activations
    over channels at layer j (student and teacher may have different widths)."""

    needs = frozenset({FEATURE_MAPS})

    def __init__(self, layers: list[str], lam: float = 1.0) -> None:
        super().__init__(lam)
        self.layers = tuple(layers)

    def forward(self, inputs: DistillationInputs) -> torch.Tensor:
        total = 0.0
        for layer in self.layers:
            student = F.normalize(inputs.student_maps[layer].pow(2).mean(1).flatten(1))
            teacher = F.normalize(inputs.teacher_maps[layer].pow(2).mean(1).flatten(1))
            total = total + (student - teacher).pow(2).sum(1).mean()
        return total


class ConfidentBatchNorm(TestTimeAdaptation):
    """Test-time adaptation: batch statistics, and BatchNorm's affine parameters stepped toward
    confident predictions, L = −(1/N)·Σ_i max_k p_ik."""

    name = "confident"
    batch_statistics = True
    needs_batchnorm = True

    def adapted_parameters(self, net: nn.Module) -> list[nn.Parameter]:
        return [p for layer in batchnorm_layers(net) for p in (layer.weight, layer.bias)]

    def objective(self, logits: torch.Tensor) -> torch.Tensor:
        return -logits.softmax(dim=1).max(dim=1).values.mean()


class PredictionMargin(Validator):
    """Model selection: the mean margin between the target's two most probable classes."""

    def score(self, outputs: ValidationOutputs) -> float:
        top = outputs.target_logits.float().softmax(dim=1).topk(2, dim=1).values
        return (top[:, 0] - top[:, 1]).mean().item()


class FisherRatio(TransferabilityScore):
    """Transferability: tr(S_between) / tr(S_within) of the features, a Fisher criterion."""

    reads = SCORE_FEATURES

    def score(self, x: np.ndarray, labels: np.ndarray) -> float:
        x = np.asarray(x, dtype=np.float64)
        means = {k: x[labels == k].mean(0) for k in np.unique(labels)}
        centre = x.mean(0)
        between = sum((labels == k).sum() * np.sum((m - centre) ** 2) for k, m in means.items())
        within = sum(np.sum((x[labels == k] - m) ** 2) for k, m in means.items())
        return float(between / max(within, 1e-12))


class LastStage(ParameterEfficient):
    """Parameter-efficient fine-tuning: the backbone's parameters under ``layer`` train (its last
    stage, say), the rest is frozen; the head trains."""

    def __init__(self, layer: str = "5") -> None:
        self.layer = layer

    def apply(self, net: nn.Module) -> None:
        for name, param in net.backbone.named_parameters():
            param.requires_grad_(name.startswith(f"{self.layer}."))
