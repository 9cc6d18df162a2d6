"""Any torchvision classification architecture, optionally with pretrained weights, as a
``Classifier``: ``features()`` is the network up to its last linear layer, ``head`` a fresh one
for the data's classes.

Weights come from torchvision (``weights=IMAGENET1K_V2``: the enum's name, downloaded once into
torch's cache) or from a local file holding the architecture's state dict
(``weights=/models/resnet50.pth``). A net built with weights is *pretrained*: fine-tuning treats
its weights as the source θ_s (L2-SP, DELTA) with no source run.
"""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import nn

from transferlab.nets.base import Classifier
from transferlab.nets.weights import load_weights_file
from transferlab.utils.errors import CheckpointError, ConfigError


def torchvision_net(
    num_classes: int,
    arch: str = "resnet50",
    weights: str | None = None,
    small_input: bool = False,
    bottleneck_dim: int | None = None,
) -> Classifier:
    """``arch``: a name of ``torchvision.models.list_models(torchvision.models)`` (resnet50,
    convnext_tiny, efficientnet_b0, vit_b_16, ...); ``weights``: None (random), a weights enum
    name of that architecture, or the path of a state-dict file; ``small_input``: for 32-px
    images, a ResNet's stem keeps its (pretrained) 7x7 convolution at stride 1 and drops the
    max-pool, so the last stage sees 4x4 maps instead of 1x1; ``bottleneck_dim``: a new
    Linear + BatchNorm + ReLU layer of that width before the head (``Classifier.add_bottleneck``,
    the adaptation benchmarks' protocol)."""
    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise ConfigError(
            f"net.arch={arch} is not a torchvision classification model; e.g. "
            f"{', '.join(a for a in available if a.startswith(('resnet', 'convnext', 'efficientnet_b')))}"
        )
    from_file = weights is not None and (Path(weights).suffix in (".pth", ".pt") or Path(weights).is_file())
    try:
        model = torchvision.models.get_model(
            arch, weights=None if from_file else _weights_enum(arch, weights)
        )
    except OSError as err:  # a failed download (URLError is an OSError)
        raise CheckpointError(
            f"net.weights={weights}: downloading {arch}'s weights failed ({err}); download them where "
            f"there is internet access (torch caches them under ~/.cache/torch/hub/checkpoints) or pass "
            f"a local state-dict file, net.weights=/path/to/{arch}.pth"
        ) from None
    if from_file:
        load_weights_file(model, Path(str(weights)), f"torchvision's {arch}", "model.state_dict()")
    feature_dim = _drop_classifier(model, arch)
    if small_input:
        _small_input_stem(model, arch)
    net = Classifier(model, feature_dim=feature_dim, num_classes=num_classes)
    net.pretrained = weights is not None
    if bottleneck_dim:
        net.add_bottleneck(bottleneck_dim)
    return net


def _weights_enum(arch: str, weights: str | None) -> object:
    if weights is None:
        return None
    enum = torchvision.models.get_model_weights(arch)
    names = [member.name for member in enum]
    if weights not in names and weights != "DEFAULT":
        raise ConfigError(
            f"net.weights={weights} is not a weights name of {arch} ({', '.join(names)}, DEFAULT) "
            f"nor a file; pass one of those or the path of a state-dict file"
        )
    return enum.DEFAULT if weights == "DEFAULT" else enum[weights]


def _drop_classifier(model: nn.Module, arch: str) -> int:
    """Replace the model's last linear layer by the identity; return its input width."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ConfigError(f"net.arch={arch} has no linear classifier layer to replace")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name)
    feature_dim = parent.get_submodule(child).in_features
    setattr(parent, child, nn.Identity())  # a Sequential's "2" is an attribute name too
    return feature_dim


def _small_input_stem(model: nn.Module, arch: str) -> None:
    if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
        raise ConfigError(
            f"net.small_input=true adjusts a ResNet's stem (conv1, maxpool); {arch} has none. "
            f"Resize the images instead (data.image_size=224)"
        )
    model.conv1.stride = (1, 1)
    model.maxpool = nn.Identity()
