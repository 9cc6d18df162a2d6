"""CIFAR-10 and CIFAR-100 through torchvision (downloaded into ``root`` on first use)."""

from __future__ import annotations

from torchvision import datasets

from transferlab.data.torchvision_data import TorchvisionDataModule


class CIFARDataModule(TorchvisionDataModule):
    native_size = 32


class CIFAR10DataModule(CIFARDataModule):
    name = "CIFAR-10"
    default_mean = (0.4914, 0.4822, 0.4465)
    default_std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    name = "CIFAR-100"
    dataset_cls = datasets.CIFAR100
    folder = "cifar-100-python"
    default_mean = (0.5071, 0.4865, 0.4409)
    default_std = (0.2673, 0.2564, 0.2762)
