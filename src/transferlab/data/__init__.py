"""LightningDataModules. Each takes ``classes`` and ``train_per_class`` (see ``base``)."""

from transferlab.data.base import ClassificationDataModule, RawSplit
from transferlab.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from transferlab.data.digit_datasets import (
    BlendedDigitsDataModule,
    MNISTDataModule,
    STL10DataModule,
    USPSDataModule,
)
from transferlab.data.digits import DigitsDataModule
from transferlab.data.domain_pair import DomainPairDataModule
from transferlab.data.imagefolder import ImageFolderDataModule
from transferlab.data.synthetic import SyntheticDataModule

__all__ = [
    "BlendedDigitsDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "DomainPairDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "RawSplit",
    "STL10DataModule",
    "SyntheticDataModule",
    "USPSDataModule",
]
