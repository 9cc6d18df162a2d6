"""Synthetic images for tests: each class is a fixed random pattern plus noise (learnable, tiny)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from transferlab.data.base import ClassificationDataModule, RawSplit


class SyntheticDataModule(ClassificationDataModule):
    """``num_classes`` classes of uint8 images; ``train_size``/``test_size`` images per class."""

    name = "synthetic"

    def __init__(
        self,
        num_classes: int = 4,
        train_size: int = 32,
        test_size: int = 8,
        noise: float = 0.3,
        generator_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mean", (0.5, 0.5, 0.5))
        kwargs.setdefault("std", (0.25, 0.25, 0.25))
        super().__init__(**kwargs)
        self.native_size = self.image_size
        self.num_synthetic_classes = num_classes
        self.sizes = {"train": train_size, "test": test_size}
        self.noise = noise
        self.generator_seed = generator_seed

    def load_splits(self) -> dict[str, RawSplit]:
        g = torch.Generator().manual_seed(self.generator_seed)
        k, s = self.num_synthetic_classes, self.image_size
        # smooth patterns: upsampled 4x4 noise, so crops and flips keep the class recognisable
        patterns = F.interpolate(torch.rand(k, 3, 4, 4, generator=g), size=(s, s), mode="bilinear")
        names = [f"class_{i}" for i in range(k)]
        raw = {}
        for split, per_class in self.sizes.items():
            targets = np.repeat(np.arange(k), per_class)
            noise = self.noise * torch.randn(len(targets), 3, s, s, generator=g)
            images = (patterns[targets] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
            raw[split] = RawSplit(images, targets, names)
        return raw
