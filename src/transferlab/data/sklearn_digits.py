"""scikit-learn's handwritten digits: 1,797 real 8x8 images that ship inside scikit-learn, and
their colour-blended version (a shifted domain, in the style of MNIST-M).

Nothing is downloaded, so this is the offline default. The images are upsampled to
``image_size`` and repeated over three channels so the same nets serve digits and colour data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.nn import functional as F

from transferlab.data.base import ClassificationDataModule, RawSplit
from transferlab.data.subsets import split_per_class

DIGIT_NAMES = [str(d) for d in range(10)]


def load_digit_images() -> tuple[torch.Tensor, np.ndarray]:
    """(1797, 3, 8, 8) uint8 images (0..16 scaled to 0..255) and their labels."""
    digits = load_digits()
    gray = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8))
    return gray.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), digits.target.astype(np.int64)


class DigitsDataModule(ClassificationDataModule):
    """Digits with a fixed, stratified test split (``test_fraction``, seeded by ``split_seed``)."""

    name = "digits"
    native_size = 8

    def __init__(self, test_fraction: float = 0.2, **kwargs: Any) -> None:
        kwargs.setdefault("hflip", False)  # a mirrored digit is another symbol
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load_splits(self) -> dict[str, RawSplit]:
        images, targets = load_digit_images()
        train, test = split_per_class(targets, self.test_fraction, self.split_seed + 1)
        return {
            "train": RawSplit(images[train], targets[train], DIGIT_NAMES),
            "test": RawSplit(images[test], targets[test], DIGIT_NAMES),
        }


class BlendedDigitsDataModule(DigitsDataModule):
    """scikit-learn's digits blended with colour patches, |patch − digit| per channel, as MNIST-M
    blends MNIST with photo crops. A shifted domain with the same ten classes and splits.
    ``patch_max`` ∈ (0, 1] scales the patches' brightness (1: any colour, which can hide a
    stroke in a channel; 0.5: dark patches, so the strokes keep their contrast)."""

    name = "blended digits"

    def __init__(self, blend_seed: int = 0, patch_max: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blend_seed = blend_seed
        self.patch_max = patch_max

    def load_splits(self) -> dict[str, RawSplit]:
        splits = super().load_splits()
        g = torch.Generator().manual_seed(self.blend_seed)
        for name, split in splits.items():
            digits = split.images.float()
            n, _, h, w = digits.shape
            # smooth random colour fields: 2x2 colours upsampled, plus a little texture
            colours = torch.rand(n, 3, 2, 2, generator=g) * 255 * self.patch_max
            patches = F.interpolate(colours, size=(h, w), mode="bilinear")
            patches = (patches + 20 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 255)
            blended = (patches - digits).abs().round().to(torch.uint8)
            splits[name] = RawSplit(blended, split.targets, split.class_names)
        return splits
