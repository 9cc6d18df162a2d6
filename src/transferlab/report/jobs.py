"""The job record every report reads: one finished, failed, unfinished or unreadable job of a sweep."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from transferlab.utils.run_files import FAILED_FILE, UnreadableRecord, finished_run, read_json

REPLICATES = {"seed"}  # swept keys that repeat a configuration rather than set one apart


@dataclass
class Job:
    """One job directory of a sweep.

    ``overrides``: its command-line overrides ``{key: value}``; ``status``: done, failed,
    unfinished (killed, still running, or crashed before it could record why) or unreadable;
    ``metrics``: its final metrics (done only); ``error``: why it is not done; ``notes`` and
    ``reports``: what the run recorded beside its metrics; ``control``: whether the run's transfer
    term was off (its method says so in ``metrics.json``; None for a run that has none to switch).
    """

    path: str
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)
    control: bool | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"

    @property
    def seed(self) -> str:
        return self.overrides.get("seed", "")

    def value(self, key: str) -> str:
        """The job's value of override ``key``; — where it did not set it (its default)."""
        return self.overrides.get(key, "—")


def read_jobs(sweep_dirs: list[Path]) -> list[Job]:
    """One record per job directory (one with ``.hydra/overrides.yaml``) under ``sweep_dirs``. A
    job whose records are truncated or corrupt is ``unreadable`` (its error says which file) and
    the rest are read on."""
    jobs = []
    for sweep_dir in sweep_dirs:
        for overrides_file in sorted(sweep_dir.glob("**/.hydra/overrides.yaml")):
            job_dir = overrides_file.parent.parent
            try:
                jobs.append(read_job(job_dir, overrides_file))
            except UnreadableRecord as err:
                print(str(err), file=sys.stderr)
                overrides = {}
                with contextlib.suppress(UnreadableRecord):
                    overrides = read_overrides(overrides_file)
                jobs.append(Job(str(job_dir), overrides, "unreadable", error=str(err)))
    return jobs


def read_overrides(path: Path) -> dict[str, str]:
    """A job's command-line overrides, ``{key: value}``."""
    try:
        listed = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UnreadableRecord(f"unreadable: {path} ({type(err).__name__})") from None
    if not isinstance(listed, list):
        raise UnreadableRecord(f"unreadable: {path} (not a list of overrides)")
    return dict(str(o).split("=", 1) for o in listed if "=" in str(o))


def read_job(job_dir: Path, overrides_file: Path) -> Job:
    overrides = read_overrides(overrides_file)
    done = finished_run(job_dir)
    failed = job_dir / FAILED_FILE
    if done is not None:
        return Job(
            str(job_dir),
            overrides,
            "done",
            metrics=done["final"],
            notes=done.get("notes", []),
            reports=done.get("reports", {}),
            control=done.get("control"),
        )
    if failed.is_file():
        error = read_json(failed)
        if not isinstance(error, dict) or "error" not in error:
            raise UnreadableRecord(f"unreadable: {failed} (no 'error')")
        return Job(str(job_dir), overrides, "failed", error=str(error["error"]))
    return Job(str(job_dir), overrides, "unfinished")


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value differs between jobs (absent counts as a value), seeds excluded."""
    keys = sorted({k for job in jobs for k in job.overrides} - REPLICATES)
    return [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
