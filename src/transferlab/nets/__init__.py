"""Plain nn.Modules: a backbone (``features``) and a linear ``head``."""

from transferlab.nets.airbench import AirbenchNet, airbench
from transferlab.nets.base import Classifier
from transferlab.nets.cnn import cnn
from transferlab.nets.lenet import lenet
from transferlab.nets.mlp import mlp
from transferlab.nets.resnet import resnet8, resnet8x4, resnet18, resnet20, resnet32x4
from transferlab.nets.timm_net import timm_net
from transferlab.nets.torchvision_net import torchvision_net
from transferlab.nets.wrn import wrn_16_2, wrn_40_2

__all__ = [
    "AirbenchNet",
    "Classifier",
    "airbench",
    "cnn",
    "lenet",
    "mlp",
    "resnet8",
    "resnet8x4",
    "resnet18",
    "resnet20",
    "resnet32x4",
    "timm_net",
    "torchvision_net",
    "wrn_16_2",
    "wrn_40_2",
]
