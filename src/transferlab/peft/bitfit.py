"""BitFit (Ben Zaken, Ravfogel & Goldberg, ACL 2022): only the backbone's bias terms train."""

from __future__ import annotations

from transferlab.nets.base import Classifier
from transferlab.peft.base import ParameterEfficient
from transferlab.utils.errors import ConfigError


class BitFit(ParameterEfficient):
    """The backbone's parameters named ``*bias`` train (a CNN's BatchNorm shifts β and any
    convolution's or linear layer's bias), every other backbone parameter is frozen; the head
    trains whole."""

    def apply(self, net: Classifier) -> None:
        biases = 0
        for name, param in net.backbone.named_parameters():
            is_bias = name.rsplit(".", 1)[-1] == "bias"
            param.requires_grad_(is_bias)
            biases += is_bias
        if not biases:
            raise ConfigError("method/peft=bitfit: this net's backbone has no bias terms to train")
