"""STL-10's labelled splits through torchvision, the target of CIFAR-10 -> STL-10 adaptation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision import datasets

from transferlab.data.base import RawSplit
from transferlab.data.torchvision_data import TorchvisionDataModule


class STL10DataModule(TorchvisionDataModule):
    """STL-10 labelled splits (96x96, resized to ``image_size``). 'car' is renamed 'automobile'
    so its classes line up with CIFAR-10's (nine shared; CIFAR's frog and STL's monkey differ)."""

    name = "STL-10"
    dataset_cls = datasets.STL10
    folder = "stl10_binary"
    native_size = 96
    default_mean = (0.4467, 0.4398, 0.4066)
    default_std = (0.2603, 0.2566, 0.2713)

    def open_split(self, train: bool, download: bool) -> Any:
        return self.dataset_cls(self.root, split="train" if train else "test", download=download)

    def as_raw(self, dataset: Any) -> RawSplit:
        names = ["automobile" if name == "car" else name for name in dataset.classes]
        return RawSplit(torch.from_numpy(dataset.data), np.asarray(dataset.labels, dtype=np.int64), names)
