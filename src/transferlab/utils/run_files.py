"""Files every run leaves in its output directory, written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from transferlab.utils.errors import TransferlabError


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then rename it
    over ``path``: a reader (or a resume after ``kill -9``) sees the old file or the new one,
    never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    write_atomic(path, write)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Plain floats from logged tensors (NaN and inf kept as strings JSON can hold)."""
    out = {}
    for name, value in metrics.items():
        number = float(value.item() if isinstance(value, torch.Tensor) else value)
        out[name] = number if math.isfinite(number) else str(number)
    return out


def best_checkpoint(trainer: Trainer) -> dict[str, Any]:
    """The monitored metric's best value, the checkpoint that holds it, and the last checkpoint."""
    best: dict[str, Any] = {}
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if callback.monitor is None:
            # ddp_spawn restores only the first callback's path in the main process
            fixed_name = Path(callback.dirpath or "") / f"{callback.filename}.ckpt"
            latest = callback.best_model_path or (str(fixed_name) if fixed_name.is_file() else "")
            if latest:
                best["last_ckpt_path"] = latest
        elif callback.best_model_path and "ckpt_path" not in best:
            best["ckpt_path"] = callback.best_model_path
            best[callback.monitor] = _best_score(callback)
    return best


def _best_score(callback: ModelCheckpoint) -> float | None:
    score = callback.best_model_score
    if score is None:  # ddp_spawn hands back the path only; the score is in the checkpoint
        state = torch.load(callback.best_model_path, map_location="cpu", weights_only=True)
        for key, value in state.get("callbacks", {}).items():
            if key.startswith("ModelCheckpoint") and value.get("monitor") == callback.monitor:
                score = value.get("best_model_score")
    return None if score is None else float(score)


def save_final_last_checkpoint(trainer: Trainer) -> None:
    """Write the unmonitored ``last`` checkpoint once more if the run's last steps are not in it
    (its epochs after the last validation, or a run that never validated): a resume point."""
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint) or callback.monitor is not None or not callback.dirpath:
            continue
        if getattr(callback, "_last_global_step_saved", None) != trainer.global_step:
            trainer.save_checkpoint(Path(callback.dirpath) / f"{callback.filename}.ckpt")


def training_progress(trainer: Trainer, last_ckpt_path: str | None) -> dict[str, int]:
    """Epochs run and optimiser steps taken, as the run's last checkpoint records them.

    ddp_spawn does not hand the loop's counters back to the main process, so when the trainer
    there reads zero the last checkpoint is the record.
    """
    if trainer.global_step == 0 and last_ckpt_path:
        state = torch.load(last_ckpt_path, map_location="cpu", weights_only=True)
        return {"epochs": int(state["epoch"]) + 1, "global_step": int(state["global_step"])}
    return {"epochs": trainer.current_epoch, "global_step": trainer.global_step}


# --- run status: what a relaunched sweep reads to skip, resume or retry a job ------------------
DONE_FILE = "metrics.json"  # written last, only by a finished run: the done marker
FAILED_FILE = "failed.json"
RUN_FILE = "run.json"


class UnreadableRecord(TransferlabError):
    """A run's record (metrics.json, failed.json, overrides.yaml, ...) is truncated or corrupt."""


def read_json(path: str | Path, fix: str = "") -> Any:
    """A JSON record, or ``UnreadableRecord`` ("unreadable: <path> (why)[; fix]") for one that is
    truncated, corrupt or unreadable: readers of many runs report it and go on."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        hint = f"; {fix}" if fix else ""
        raise UnreadableRecord(f"unreadable: {path} ({type(err).__name__}: {err}){hint}") from None


def finished_run(output_dir: str | Path) -> dict[str, Any] | None:
    """The metrics of a finished run in ``output_dir``, or None (``UnreadableRecord``: its
    metrics.json is corrupt; delete it to run the job again)."""
    path = Path(output_dir) / DONE_FILE
    if not path.is_file():
        return None
    fix = "delete it to run the job again"
    record = read_json(path, fix)
    if not isinstance(record, dict) or not isinstance(record.get("final"), dict):
        raise UnreadableRecord(f"unreadable: {path} (no 'final' metrics); {fix}")
    return record


def write_failed(output_dir: str | Path, kind: str, message: str, trace: str) -> None:
    """Record why a run failed (summaries list it as failed, with ``kind: message``)."""
    write_json_atomic(
        Path(output_dir) / FAILED_FILE,
        {"status": "failed", "error": f"{kind}: {message}", "traceback": trace},
    )
