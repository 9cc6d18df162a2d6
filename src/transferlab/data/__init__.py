"""LightningDataModules. Each takes ``classes`` and ``train_per_class`` (see ``base``)."""

from transferlab.data.base import ClassificationDataModule, EvalRoute, RawSplit
from transferlab.data.benchmarks import DomainBenchmarkDataModule
from transferlab.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from transferlab.data.cifar10_c import CIFAR10CDataModule
from transferlab.data.domain_pair import DomainPairDataModule
from transferlab.data.imagefolder import ImageFolderDataModule
from transferlab.data.mnist_usps import MNISTDataModule, USPSDataModule
from transferlab.data.sklearn_digits import BlendedDigitsDataModule, DigitsDataModule
from transferlab.data.stl10 import STL10DataModule
from transferlab.data.synthetic import SyntheticDataModule
from transferlab.data.torchvision_data import TorchvisionDataModule

__all__ = [
    "BlendedDigitsDataModule",
    "CIFAR10CDataModule",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "DomainBenchmarkDataModule",
    "DomainPairDataModule",
    "EvalRoute",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "RawSplit",
    "STL10DataModule",
    "SyntheticDataModule",
    "TorchvisionDataModule",
    "USPSDataModule",
]
