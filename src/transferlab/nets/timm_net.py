"""Any timm model (``timm.list_models()``) as a ``Classifier``: ``features()`` is the model's pooled
features (timm's ``num_classes=0``), ``head`` a fresh linear layer for the data's classes.

Weights come from a local file — a ``.safetensors`` file or a state dict (``.pth``/``.pt``), as
timm or the hub saves them, with or without the model's own classifier — or from the Hugging Face
hub (``weights=hub``: the pretrained weights of ``arch``, which may carry a tag,
``resnet50.a1_in1k``), downloaded once into the hub's cache. A net built with weights is
*pretrained*: fine-tuning treats its weights as the source θ_s (L2-SP, DELTA) with no source run.

The model's own data settings travel with it: ``data_settings(arch)`` is the normalisation and
input size its pretrained weights expect, which ``apply_net_data`` (below) writes into the
data config (``net.data_config``); ``stage_layers`` are its stages' module names
(``feature_info``), the names the regularizers and distillation losses that read feature maps take
in ``layers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.nets.base import Classifier
from transferlab.nets.weights import load_weights_file
from transferlab.utils.errors import CheckpointError, ConfigError

HUB = "hub"


DATA_CONFIG = ("normalization", "all", "none")


def timm_net(
    num_classes: int,
    arch: str = "resnet18",
    weights: str | None = None,
    data_config: str = "normalization",
    bottleneck_dim: int | None = None,
) -> Classifier:
    """``arch``: a timm model name (``timm.list_models()``, with an optional pretrained tag);
    ``weights``: None (random), ``hub`` (timm's pretrained weights from the Hugging Face hub) or
    the path of a weights file of that architecture; ``data_config``: what of the weights' data
    settings the config carries into ``data`` (``apply_net_data``); ``bottleneck_dim``: a new
    layer of that width before the head (``Classifier.add_bottleneck``)."""
    import timm

    check_arch(arch)
    if data_config not in DATA_CONFIG:
        raise ConfigError(f"net.data_config={data_config}; use one of {', '.join(DATA_CONFIG)}")
    from_hub = weights == HUB
    try:
        model = timm.create_model(arch, pretrained=from_hub, num_classes=0)
    except (OSError, RuntimeError, ValueError) as err:  # no network, no such tag on the hub
        if not from_hub:
            raise
        raise CheckpointError(
            f"net.weights=hub: fetching {arch}'s pretrained weights from the Hugging Face hub failed "
            f"({type(err).__name__}); where there is no internet access, save them elsewhere "
            f"(timm.create_model('{arch}', pretrained=True).state_dict()) and pass the file, "
            f"net.weights=/path/to/{arch.split('.')[0]}.safetensors"
        ) from None
    if weights is not None and not from_hub:  # timm's classifier (which num_classes=0 removed) left out
        classifier = model.pretrained_cfg.get("classifier")
        heads = classifier if isinstance(classifier, (list, tuple)) else [classifier] if classifier else []
        how = f"timm.create_model('{arch}').state_dict()"
        load_weights_file(model, Path(weights), f"timm's {arch}", how, drop=heads)
    net = Classifier(model, feature_dim=int(model.num_features), num_classes=num_classes)
    net.pretrained = weights is not None
    if bottleneck_dim:
        net.add_bottleneck(bottleneck_dim)
    net.stage_layers = [info["module"] for info in getattr(model, "feature_info", [])]
    return net


def check_arch(arch: str) -> None:
    """Refuse a name timm does not know, with the closest it does."""
    import timm

    if timm.is_model(arch):
        return
    stem = arch.split(".")[0].rstrip("0123456789_")[:6] or arch[:3]
    near = timm.list_models(f"*{stem}*")[:8] or timm.list_models()[:8]
    raise ConfigError(f"net.arch={arch} is not a timm model; e.g. {', '.join(near)} (timm.list_models())")


def data_settings(arch: str) -> dict[str, Any]:
    """The normalisation and input side the pretrained weights of ``arch`` expect:
    ``{"mean": [...], "std": [...], "image_size": int}`` (timm's pretrained config)."""
    import timm

    check_arch(arch)
    cfg = timm.get_pretrained_cfg(arch)
    if cfg is None:  # an architecture without pretrained weights: timm's defaults
        return {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "image_size": 224}
    cfg = cfg.to_dict()
    return {"mean": list(cfg["mean"]), "std": list(cfg["std"]), "image_size": int(cfg["input_size"][-1])}


def apply_net_data(cfg: DictConfig, given: Iterable[str] = ()) -> None:
    """A timm net with weights carries the data settings they expect into ``data``
    (``net.data_config``: ``normalization`` the mean and std, ``all`` the input size too, ``none``
    nothing), on both domains of a pair; a key in ``given`` (the command line's) keeps its value."""
    net = cfg.get("net")
    if net is None or str(net.get("_target_", "")) not in (
        "transferlab.nets.timm_net",
        f"{__name__}.timm_net",
    ):
        return
    mode = net.get("data_config", "normalization")
    if mode == "none" or net.get("weights") is None:  # random weights expect no statistics
        return
    settings = data_settings(str(net.arch))
    given = {key.lstrip("+~") for key in given}
    domains = [f"data.{d}" for d in ("source", "target") if isinstance(cfg.data.get(d), DictConfig)]
    updates = {f"{d}.{k}": settings[k] for d in domains or ["data"] for k in ("mean", "std")}
    if mode == "all":
        updates["data.image_size"] = settings["image_size"]
    with open_dict(cfg):
        for key, value in updates.items():
            if key not in given:
                OmegaConf.update(cfg, key, value, merge=False, force_add=True)
