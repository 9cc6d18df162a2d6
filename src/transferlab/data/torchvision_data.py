"""Datasets that torchvision downloads, with official train and test splits, as datamodules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets
from torchvision.datasets import cifar as tv_cifar

from transferlab.data.base import ClassificationDataModule, RawSplit
from transferlab.utils.errors import DataError


class TorchvisionDataModule(ClassificationDataModule):
    """A torchvision dataset with official train and test splits, downloaded on first use."""

    dataset_cls: Any = datasets.CIFAR10
    folder = "cifar-10-batches-py"

    def __init__(self, root: str, download: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = str(root)
        self.download = download

    def _missing(self, reason: str) -> DataError:
        return DataError(
            f"{self.name} is not in '{Path(self.root) / self.folder}' ({reason}); download it "
            f"where there is internet access, or point data.root at a folder that holds "
            f"'{self.folder}' (e.g. data.root=/datasets/cifar)"
        )

    def prepare_data(self) -> None:
        if not self.download:
            return
        self.check_archive()
        try:
            for train in (True, False):
                self.open_split(train, download=True)
        except (OSError, RuntimeError) as err:  # URLError is an OSError
            raise self._missing(f"download failed: {err}") from None

    def check_archive(self) -> None:
        """A downloaded archive that fails its MD5 checksum (a truncated or corrupt download) is
        reported as such: torchvision would try to download it again, which fails offline."""
        name, md5 = getattr(self.dataset_cls, "filename", None), getattr(self.dataset_cls, "tgz_md5", None)
        archive = Path(self.root) / str(name)
        if not (name and md5 and archive.is_file()) or self._extracted():
            return
        if not tv_cifar.check_integrity(str(archive), md5):
            raise DataError(
                f"{archive} fails its MD5 checksum (a truncated or corrupt download); "
                f"delete it and run again to download it afresh"
            )

    def _extracted(self) -> bool:
        files = getattr(self.dataset_cls, "train_list", []) + getattr(self.dataset_cls, "test_list", [])
        folder = Path(self.root) / self.folder
        return bool(files) and all(tv_cifar.check_integrity(str(folder / f), md5) for f, md5 in files)

    def open_split(self, train: bool, download: bool) -> Any:
        return self.dataset_cls(self.root, train=train, download=download)

    def load_splits(self) -> dict[str, RawSplit]:
        try:
            train = self.open_split(True, download=False)
            test = self.open_split(False, download=False)
        except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found or corrupted"
            hint = "data.download=false" if not self.download else str(err).rstrip(".")
            raise self._missing(hint) from None
        return {"train": self.as_raw(train), "test": self.as_raw(test)}

    def as_raw(self, dataset: Any) -> RawSplit:
        """uint8 (N, C, H, W) images in memory: tensor transforms skip PIL entirely."""
        images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
        return RawSplit(images, np.asarray(dataset.targets, dtype=np.int64), list(dataset.classes))
