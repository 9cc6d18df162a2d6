"""Checkpoints as untrusted input: safe loading, rebuilding the net, the manifest beside them."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import OmegaConf

from transferlab.nets.base import Classifier
from transferlab.utils.errors import CheckpointError
from transferlab.utils.run_files import write_json_atomic


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
        raise CheckpointError(
            f"cannot read checkpoint {path} ({err}); it may be truncated"
        ) from None


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
    net = hydra.utils.instantiate(
        OmegaConf.create(metadata["net"]), num_classes=metadata["num_classes"]
    )
    prefix = "net."
    weights = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    net.load_state_dict(weights)
    return net


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(
    checkpoint_path: str | Path, metadata: dict[str, Any], metrics: dict[str, Any]
) -> Path:
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
