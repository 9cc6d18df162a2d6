"""Interrupted runs: atomic checkpoints, RNG states for checkpoints, and finding where to resume.

A run killed at any moment (``kill -9``, a pre-empted SLURM job) is started again with the same
command: a job directory of a sweep holds its ``last.ckpt`` and resumes from it; a single run
resumes with ``ckpt_path=last`` from the newest unfinished run of the same config. With
``trainer.deterministic=true`` on the CPU the resumed run ends bitwise where an uninterrupted
one would, because the checkpoint also carries the random number generators' states (the
datamodule's ``state_dict`` holds them: Lightning calls it only when it writes a checkpoint).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from transferlab.utils.checkpoint import load_checkpoint, resolve_checkpoint_path
from transferlab.utils.config import config_digest
from transferlab.utils.contract import CHECKPOINT_KEY, RunContract
from transferlab.utils.errors import CheckpointError, ConfigError
from transferlab.utils.log import log
from transferlab.utils.run_files import (
    DONE_FILE,
    RUN_FILE,
    UnreadableRecord,
    read_json,
    write_atomic,
    write_json_atomic,
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file, flushed, then renamed into place: a kill during
    a save leaves the previous checkpoint intact, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, NumPy and Python generators' states, as a checkpoint can hold them
    (``weights_only`` loading: tensors, numbers and tuples only)."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the generators to ``state`` (from ``rng_state``)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def claim_output_dir(output_dir: Path, flat: dict[str, Any]) -> None:
    """Record this run's config in ``run.json``; refuse a directory that holds another config's
    run (a relaunched sweep whose configs changed would otherwise mix two experiments)."""
    record_path = output_dir / RUN_FILE
    if record_path.is_file():
        previous = read_json(record_path, "relaunch into a new directory or delete that one")
        if previous.get("config_digest") != config_digest(flat):
            old = previous.get("config", {})
            changed = sorted(
                (k for k in set(old) | set(flat) if old.get(k) != flat.get(k)),
                key=lambda k: (k not in old or k not in flat, k),  # changed values first
            )
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {flat.get(k)!r}" for k in changed[:3])
            more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
            raise ConfigError(
                f"{output_dir} holds a run of another config ({shown}{more}); relaunch into a new "
                f"directory (hydra.sweep.dir=... or hydra.run.dir=...) or delete that one"
            )
        return
    write_json_atomic(record_path, {"config_digest": config_digest(flat), "config": flat})


def last_checkpoint(output_dir: Path) -> Path | None:
    path = output_dir / "checkpoints" / "last.ckpt"
    return path if path.is_file() else None


def unfinished_run_of(run_dir: Path, flat: dict[str, Any]) -> bool:
    """Whether ``run_dir`` holds a run of this config (``run.json``'s digest) that did not finish."""
    record_path = run_dir / RUN_FILE
    if not record_path.is_file() or (run_dir / DONE_FILE).is_file():
        return False
    try:
        record = read_json(record_path)
    except UnreadableRecord:  # not a run this config can continue
        return False
    return isinstance(record, dict) and record.get("config_digest") == config_digest(flat)


def latest_unfinished_run(runs_dir: Path, flat: dict[str, Any], exclude: Path) -> Path | None:
    """The newest run directory under ``runs_dir`` with this config, a last.ckpt, and no
    metrics.json (``ckpt_path=last`` for single runs, whose directories are new each time)."""
    candidates = [
        record_path.parent
        for record_path in runs_dir.glob(f"*/{RUN_FILE}")
        if record_path.parent != exclude
        and last_checkpoint(record_path.parent) is not None
        and unfinished_run_of(record_path.parent, flat)
    ]
    return max(candidates, key=lambda d: last_checkpoint(d).stat().st_mtime, default=None)  # type: ignore[union-attr]


def run_to_continue(requested: str | None, output_dir: Path, flat: dict[str, Any]) -> Path | None:
    """The directory of the run that ``ckpt_path=requested`` continues, so that a resumed run
    stays one run (its checkpoints, metrics, selection records and events in one directory):
    with ``last``, this directory if it holds a last.ckpt, else the newest unfinished run of
    this config beside it; with a checkpoint inside an unfinished run of this config, that run.
    None: a new run (from a checkpoint of a finished run or of another config: a changed length,
    a new learning rate)."""
    if not requested:
        return None
    if requested == "last":
        if last_checkpoint(output_dir) is not None:
            return output_dir
        found = latest_unfinished_run(output_dir.parent, flat, exclude=output_dir)
        if found is None:
            raise CheckpointError(
                f"ckpt_path=last: no unfinished run of this config with a last.ckpt under "
                f"{output_dir.parent}; run without ckpt_path to start one"
            )
        return found
    path = resolve_checkpoint_path(requested)
    run_dir = path.parent.parent
    if path.parent.name == "checkpoints" and unfinished_run_of(run_dir, flat):
        return run_dir
    return None


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run resumes from: its path, the contract of the run that wrote it (None
    in a checkpoint without one) and the optimiser steps it had taken."""

    path: str
    contract: RunContract | None
    global_step: int


def resume_from(requested: str | None, output_dir: Path) -> ResumePoint | None:
    """The checkpoint to resume from: ``requested`` (a path or a run directory; ``last``: this
    directory's, after ``run_to_continue`` chose it), else this directory's own ``last.ckpt``
    when an earlier attempt was interrupted. Loaded safely once (pickled code refused, a
    truncated file reported)."""
    path = (
        resolve_checkpoint_path(requested)
        if requested and requested != "last"
        else last_checkpoint(output_dir)
    )
    if path is None:
        return None
    checkpoint = load_checkpoint(path)
    record = checkpoint.get(CHECKPOINT_KEY)
    contract = RunContract.from_dict(record, f"checkpoint {path}") if record is not None else None
    log.info("resuming from %s", path)
    return ResumePoint(str(path), contract, int(checkpoint.get("global_step", 0)))
