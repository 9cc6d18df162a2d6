"""Checkpoints as untrusted input: safe loading, the manifest beside them, and the typed handle
(``HandedCheckpoint``) through which a run receives a source or a teacher. Rebuilding a net from
one lives a layer up, in ``nets/reference.py``."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from transferlab.utils.contract import RunContract
from transferlab.utils.errors import CheckpointError
from transferlab.utils.run_files import read_json, write_json_atomic

#: where a checkpoint of a parameter-efficient run records its member and its source (peft/base.py)
PEFT_KEY = "transferlab_peft"
#: where a fine-tuning run that kept its source's head records that source: its start θ_0 (WiSE-FT)
START_KEY = "transferlab_start"


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


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(checkpoint_path: str | Path, contract: RunContract, metrics: dict[str, Any]) -> Path:
    """Write ``manifest.json`` beside a checkpoint that other runs will load: its file name, its
    sha256, the run's contract and its final metrics."""
    checkpoint_path = Path(checkpoint_path)
    manifest = {
        "checkpoint": checkpoint_path.name,
        "sha256": sha256(checkpoint_path),
        **contract.to_dict(),
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
        named = read_json(manifest, "retrain the run or pass its checkpoint file").get("checkpoint")
        return path / "checkpoints" / str(named)
    return resolve_checkpoint_path(path, what)


def verify_manifest(path: Path) -> None:
    """If a manifest sits beside the checkpoint and names it, the file must match its sha256."""
    manifest_path = path.parent / "manifest.json"
    if not manifest_path.is_file():
        return
    manifest = read_json(manifest_path, "retrain the run or delete the manifest")
    if manifest.get("checkpoint") == path.name and manifest.get("sha256") != sha256(path):
        raise CheckpointError(
            f"checkpoint {path} does not match the sha256 in {manifest_path}: the file changed "
            f"after training (truncated or replaced); retrain it or restore the original"
        )


@dataclass(frozen=True)
class HandedCheckpoint:
    """A checkpoint one run hands another (a source, a teacher), opened once: where it is, its
    sha256, the contract of the run that wrote it, and its tensors. ``what`` is the config key it
    came from, for messages."""

    path: Path
    sha256: str
    contract: RunContract
    state_dict: dict[str, torch.Tensor]
    what: str
    #: a run that trained a part of its net (``transferlab.peft``): its member's config and the
    #: source the rest comes from; its ``state_dict`` holds only that part
    partial: dict[str, Any] | None = None
    #: a fine-tuning run that started from its source's head too: that source (``START_KEY``)
    start: dict[str, Any] | None = None

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix`` (``net.``, ``net.backbone.``), with the prefix removed."""
        return {k[len(prefix) :]: v for k, v in self.state_dict.items() if k.startswith(prefix)}


def open_checkpoint(path: str | Path, what: str) -> HandedCheckpoint:
    """Resolve ``path`` (a checkpoint, or a run directory whose manifest names its best one),
    check it against its manifest's sha256, load it safely and read its contract."""
    resolved = resolve_source_checkpoint(path, what)
    verify_manifest(resolved)
    checkpoint = load_checkpoint(resolved, what)
    return HandedCheckpoint(
        path=resolved,
        sha256=sha256(resolved),
        contract=RunContract.of_checkpoint(checkpoint, str(resolved)),
        state_dict=checkpoint.get("state_dict", {}),
        what=what,
        partial=checkpoint.get(PEFT_KEY),
        start=checkpoint.get(START_KEY),
    )
