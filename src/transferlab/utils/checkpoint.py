"""Checkpoints as untrusted input: safe loading, rebuilding the net, the manifest beside them."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf

from transferlab.nets.base import Classifier
from transferlab.utils.errors import CheckpointError
from transferlab.utils.run_files import write_json_atomic
from transferlab.utils.state_dict import mismatches


def resolve_checkpoint_path(path: str | Path, what: str = "ckpt_path") -> Path:
    """An existing checkpoint file; a run directory resolves to its ``checkpoints/last.ckpt``."""
    path = Path(path)
    if path.is_dir() and (path / "checkpoints" / "last.ckpt").is_file():
        return path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {what}={path}; pass the path of an existing .ckpt file "
            f"(e.g. logs/<task>/runs/<run>/checkpoints/last.ckpt)"
        )
    return path


def load_checkpoint(path: str | Path, what: str = "ckpt_path") -> dict[str, Any]:
    """Load on the CPU with ``weights_only=True``: tensors and plain data only, never code."""
    path = resolve_checkpoint_path(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"refusing checkpoint {path}: it carries objects other than tensors and plain data "
            f"({first_line}); re-save it as a plain state dict"
        ) from None
    except (RuntimeError, EOFError) as err:
        raise CheckpointError(f"cannot read checkpoint {path} ({err}); it may be truncated") from None


def checkpoint_metadata(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    metadata = checkpoint.get("transferlab")
    if not metadata or "net" not in metadata:
        raise CheckpointError(
            f"checkpoint {path} has no transferlab metadata (net config, classes); "
            f"only checkpoints written by transferlab.train can be loaded by config"
        )
    return metadata


def build_net(checkpoint: dict[str, Any], path: str | Path) -> Classifier:
    """Rebuild the checkpoint's net from its stored config and load its weights."""
    metadata = checkpoint_metadata(checkpoint, path)
    net_config = dict(metadata["net"])
    if "weights" in net_config:  # pretrained weights are in the checkpoint: never fetch them again
        net_config["weights"] = None
    net = hydra.utils.instantiate(OmegaConf.create(net_config), num_classes=metadata["num_classes"])
    prefix = "net."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    net.load_state_dict(weights)
    return net


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(checkpoint_path: str | Path, metadata: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write ``manifest.json`` beside a checkpoint that other runs will load."""
    checkpoint_path = Path(checkpoint_path)
    manifest = {
        "checkpoint": checkpoint_path.name,
        "sha256": sha256(checkpoint_path),
        **metadata,
        "metrics": metrics,
    }
    target = checkpoint_path.parent / "manifest.json"
    write_json_atomic(target, manifest)
    return target


def resolve_source_checkpoint(path: str | Path, what: str) -> Path:
    """A checkpoint file, or a run directory whose manifest names its best checkpoint."""
    path = Path(path)
    manifest = path / "checkpoints" / "manifest.json"
    if path.is_dir() and manifest.is_file():
        return path / "checkpoints" / json.loads(manifest.read_text())["checkpoint"]
    return resolve_checkpoint_path(path, what)


def verify_manifest(path: Path) -> None:
    """If a manifest sits beside the checkpoint and names it, the file must match its sha256."""
    manifest_path = path.parent / "manifest.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("checkpoint") == path.name and manifest.get("sha256") != sha256(path):
        raise CheckpointError(
            f"checkpoint {path} does not match the sha256 in {manifest_path}: the file changed "
            f"after training (truncated or replaced); retrain it or restore the original"
        )


def load_backbone(net: Classifier, path: str | Path, net_config: dict[str, Any], what: str) -> dict:
    """Copy a checkpoint's backbone (weights and BatchNorm statistics) into ``net``.

    The head is left alone: the target task has its own classes. Refuses a checkpoint whose net
    config or backbone tensors differ from ``net``'s, listing what does not match. Returns the
    checkpoint's metadata.
    """
    path = resolve_source_checkpoint(path, what)
    verify_manifest(path)
    checkpoint = load_checkpoint(path, what)
    metadata = checkpoint_metadata(checkpoint, path)
    prefix = "net.backbone."
    weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    problems = mismatches(weights, net.backbone.state_dict())
    if problems:
        raise CheckpointError(
            f"{what}={path} holds a {metadata['net'].get('_target_')} backbone that does not fit "
            f"net {net_config.get('_target_')} ({problems}); "
            f"use the net the checkpoint was trained with"
        )
    differing = sorted(
        k for k in set(net_config) | set(metadata["net"]) if net_config.get(k) != metadata["net"].get(k)
    )
    if differing:
        pairs = ", ".join(
            f"{k}: {metadata['net'].get(k)} (source) vs {net_config.get(k)} (target)" for k in differing
        )
        raise CheckpointError(
            f"the source net and the target net configs disagree ({pairs}); "
            f"train both stages with the same net"
        )
    net.backbone.load_state_dict(weights)
    return metadata
