"""Weights files of a pretrained net (``net.weights=<file>``): read one, and load it into a model
only if every tensor fits, listing what does not."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from transferlab.utils.errors import CheckpointError
from transferlab.utils.state_dict import mismatches


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (a bare state dict, or one under
    ``state_dict``/``model``, as training scripts save them), tensors only."""
    if not path.is_file():
        raise CheckpointError(f"net.weights={path}: no such file; pass a weights file of the architecture")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"net.weights={path} cannot be read as weights ({err})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise CheckpointError(f"net.weights={path} holds a {type(state).__name__}, not a state dict")
    return state


def load_weights_file(
    model: nn.Module, path: Path, architecture: str, how_to_save: str, drop: Sequence[str] = ()
) -> None:
    """Load the weights in ``path`` into ``model`` (``architecture`` names it in messages,
    ``how_to_save`` says how to write a file that fits); the tensors under the prefixes ``drop``
    (a classifier the model no longer has) are left out; anything else that does not fit is
    refused, listed."""
    state = read_weights(path)
    state = {k: v for k, v in state.items() if not any(k.startswith(f"{prefix}.") for prefix in drop)}
    problems = mismatches(state, model.state_dict())
    if problems:
        raise CheckpointError(
            f"net.weights={path} does not fit {architecture} ({problems}); "
            f"pass weights saved from it ({how_to_save})"
        )
    model.load_state_dict(state)
