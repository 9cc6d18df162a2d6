"""MNIST and USPS (torchvision), read as RGB: the digit domains of the adaptation benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import datasets

from transferlab.data.base import RawSplit
from transferlab.data.sklearn_digits import DIGIT_NAMES
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
