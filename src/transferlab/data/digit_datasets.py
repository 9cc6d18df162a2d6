"""Digit datasets for domain adaptation: MNIST and USPS (torchvision) and a colour-blended
version of scikit-learn's digits (in the style of MNIST-M)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torchvision import datasets

from transferlab.data.base import RawSplit
from transferlab.data.digits import DIGIT_NAMES, DigitsDataModule
from transferlab.data.torchvision_data import TorchvisionDataModule


def _gray_to_rgb(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    return (
        torch.as_tensor(np.asarray(images), dtype=torch.uint8).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    )


class MNISTDataModule(TorchvisionDataModule):
    """MNIST (28x28 grayscale, read as RGB); classes '0'..'9'."""

    name = "MNIST"
    dataset_cls = datasets.MNIST
    folder = "MNIST"
    native_size = 28
    default_mean = (0.1307,) * 3
    default_std = (0.3081,) * 3

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("hflip", False)
        super().__init__(**kwargs)

    def as_raw(self, dataset: Any) -> RawSplit:
        return RawSplit(_gray_to_rgb(dataset.data), np.asarray(dataset.targets, dtype=np.int64), DIGIT_NAMES)


class USPSDataModule(MNISTDataModule):
    """USPS (16x16 grayscale, read as RGB); classes '0'..'9'."""

    name = "USPS"
    dataset_cls = datasets.USPS
    folder = "usps.bz2"
    native_size = 16
    default_mean = (0.2469,) * 3
    default_std = (0.2989,) * 3


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
