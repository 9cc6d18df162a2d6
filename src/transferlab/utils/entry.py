"""What both entry points do around the work: seeding, quiet logs, one-line user errors."""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transferlab.utils.errors import TransferlabError
from transferlab.utils.log import log
from transferlab.utils.run_files import FAILED_FILE, write_failed


def silence_known_warnings() -> None:
    """Warnings that are expected in this template and say nothing actionable to its users."""
    for pattern in (
        ".*does not have many workers.*",  # num_workers=0 is deliberate for in-memory data
        ".*The number of training batches.*smaller than the logging interval.*",
        ".*Checkpoint directory .* exists and is not empty.*",  # resuming into the same run
        ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",  # inside Lightning, not ours
    ):
        warnings.filterwarnings("ignore", message=pattern)
    # an advertisement for a cloud service, printed by every run that saves checkpoints
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡")
    )


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a refused input into ``error: <message>`` on stderr and exit status 1: a
    ``TransferlabError``, or a constructor's ``ValueError`` that reaches us wrapped by Hydra's
    instantiation (its "Error in call to target ..." text and traceback say nothing a user needs)."""
    try:
        yield
    except Exception as err:
        close_progress_bars()
        if not refused_input(err):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)


def close_progress_bars() -> None:
    """Close every open tqdm progress bar (Lightning's, a loader's) and end its line, so that
    what is printed next (an error, a sweep's verdict) is the last line on the terminal: a bar
    left open is redrawn when the interpreter exits, after the message."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    bars = list(getattr(tqdm, "_instances", []))
    for bar in bars:
        bar.close()
    if bars:
        sys.stderr.flush()


def refused_input(err: BaseException) -> bool:
    """Whether ``err`` refuses a user's input (the message names the problem and the fix)."""
    cause = _instantiation_cause(err)
    return isinstance(cause, TransferlabError | ValueError)


def _instantiation_cause(err: BaseException) -> BaseException:
    """The error a constructor raised, under any number of Hydra instantiation wrappers."""
    from hydra.errors import InstantiationException

    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err


def one_line(err: BaseException) -> str:
    """The error's own message; for a constructor's error wrapped by Hydra, that error's message
    prefixed by the config key of the object it built (``method.regularizer: ...``) unless it
    names it already; for an error re-raised from a DataLoader worker (whose message is the
    worker's traceback) the original message, which is its last line."""
    cause = _instantiation_cause(err)
    message = str(cause).strip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(": ", 1)[-1]
    if cause is not err:
        found = re.search(r"^full_key: (\S+)$", str(err), flags=re.MULTILINE)
        key = found.group(1) if found else ""
        if key and key not in message:
            message = f"{key}: {message}"
    return message.splitlines()[0] if message else type(cause).__name__


class Outcome:
    """Whether the work inside ``record_failure`` failed (and was recorded)."""

    failed = False


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def command_line_keys() -> set[str]:
    """The keys this Hydra job's command line sets (``method.lam`` of ``method.lam=0.1``); empty
    outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    from omegaconf import OmegaConf

    task = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)  # values unresolved
    return {str(o).split("=", 1)[0].lstrip("+~") for o in task}


def run_label(task_name: str, output_dir: str | Path) -> str:
    """Which run this is, in a line: the task and its command-line overrides, e.g.
    ``finetune: method.lam=0.1, seed=1``, for the Hydra job's own run; the task name alone for a
    run outside Hydra or a pipeline's stage (the overrides are not its own)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return task_name
    hydra_cfg = HydraConfig.get()
    job_dir = hydra_cfg.runtime.get("output_dir")
    if job_dir and Path(job_dir).resolve() != Path(output_dir).resolve():
        return task_name
    overrides = list(hydra_cfg.overrides.task)
    return f"{task_name}: {', '.join(overrides)}" if overrides else task_name


@contextmanager
def record_failure(output_dir: str | Path) -> Iterator[Outcome]:
    """Write ``failed.json`` (the error and its traceback) for a run that raises.

    In a multirun the sweep goes on with its other jobs: the error is logged in one line and
    the job is left marked failed (summaries list it so). A single run re-raises the error.
    """
    outcome = Outcome()
    try:
        yield outcome
    except Exception as err:
        close_progress_bars()
        kind = type(_instantiation_cause(err)).__name__
        write_failed(output_dir, kind, one_line(err), traceback.format_exc())
        if not in_multirun():
            raise
        outcome.failed = True
        log.error("job failed: %s: %s (see %s)", kind, one_line(err), Path(output_dir) / FAILED_FILE)


def check_override_keys(config_name: str, args: list[str]) -> None:
    """Refuse a command-line override of a key the config does not have, listing the valid keys.

    Hydra's own error for ``method.lamda=0.1`` names neither the valid keys nor the node; this
    composes the config with the group choices of ``args`` (the first value of a sweep) and looks
    every plain ``key=value`` override up in it. Anything it cannot judge is left to Hydra.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    from transferlab.utils.config import compose_config, project_root

    if any(a in ("-cn", "--config-name", "-cp", "--config-path") or a.startswith("--config") for a in args):
        return
    candidates = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:  # a syntax error: Hydra reports it
        return
    conf_dir = Path(project_root()) / "conf"
    local = [p.read_text() for p in (conf_dir / "local").glob("*.yaml")]  # a machine's own search path
    searched = any("hydra.searchpath" in a for a in args) or any("searchpath" in text for text in local)
    check_group_options(overrides, conf_dir, searched)
    structural, values = [], []
    for override, text in zip(overrides, candidates, strict=True):
        key = override.key_or_group
        if override.is_hydra_override() or override.package is not None:
            continue
        if (conf_dir / key).is_dir() or override.is_add() or override.is_delete() or override.is_force_add():
            first = first_sweep_value(override, conf_dir) if override.is_sweep_override() else None
            structural.append(f"{text.split('=', 1)[0]}={first}" if first is not None else text)
        else:
            values.append(key)
    if not values:
        return
    try:
        cfg = compose_config(structural, output_dir=".", config_name=config_name)
    except Exception:
        return
    for key in values:
        parent_key, _, name = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
        if not isinstance(parent, DictConfig) or name in parent.keys():  # noqa: SIM118 (a "???" value is not "in")
            continue
        valid = ", ".join(sorted(str(k) for k in parent if not str(k).startswith("_")))
        where = f"under {parent_key}" if parent_key else "at the top level"
        print(
            f"error: {key} is not in the config; valid keys {where}: {valid} "
            f"(to add a new key on purpose: +{key}=...)",
            file=sys.stderr,
        )
        sys.exit(1)


def check_group_options(overrides: list[Any], conf_dir: Path, searched: bool) -> None:
    """Refuse ``group=option`` (every value of a sweep) naming an option the group does not have,
    listing those it has; Hydra's own message is a dozen lines. Options on an added search path
    (``hydra.searchpath``) are Hydra's to find."""
    from hydra.core.override_parser.types import Glob

    if searched:
        return
    for override in overrides:
        group = conf_dir / override.key_or_group
        if override.is_hydra_override() or override.is_delete() or not group.is_dir():
            continue
        if isinstance(override.value(), Glob):
            continue
        chosen = (
            list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        )
        options = sorted(p.stem for p in group.glob("*.yaml"))
        for option in chosen:
            if option is None or str(option) in ("null", "") or not isinstance(option, str | int | float):
                continue
            if str(option) not in options:
                listed = ", ".join(o for o in options if not o.startswith("_"))
                print(
                    f"error: {override.key_or_group}={option} is not an option of {override.key_or_group}; "
                    f"the options: {listed}",
                    file=sys.stderr,
                )
                sys.exit(1)


def first_sweep_value(override: Any, conf_dir: Path) -> str | None:
    """The first value a sweep override takes. ``glob(...)`` is matched here against the group's
    files: Hydra expands it only with its config loader, which does not exist yet."""
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        options = sorted(path.stem for path in (conf_dir / override.key_or_group).glob("*.yaml"))
        matched = value.filter(options)
        return matched[0] if matched else None
    return next(iter(override.sweep_string_iterator()))


def continue_in_place(args: list[str]) -> list[str]:
    """``args`` with ``hydra.run.dir=<that run>`` added when ``ckpt_path`` continues an unfinished
    run of the same config (``utils/resume.run_to_continue``): the resumed run then writes into
    the directory of the run it resumes (its log appended, its checkpoints, metrics, selection
    records and events beside the first attempt's) instead of a new one. A sweep (its jobs'
    directories are fixed), an explicit ``hydra.run.dir`` or anything this cannot judge: ``args``
    unchanged (the run itself then reports a bad ``ckpt_path``)."""
    from transferlab.utils.config import compose_config, flat_config
    from transferlab.utils.resume import run_to_continue

    if any(a in ("-m", "--multirun") or a.startswith(("hydra.run.dir=", "-c", "--c")) for a in args):
        return args
    requested = [a.split("=", 1)[1] for a in args if a.startswith(("ckpt_path=", "+ckpt_path="))]
    if not requested or requested[-1] in ("", "null"):
        return args
    try:
        composed = compose_config([a for a in args if not a.startswith(("hydra.", "+hydra.", "-"))], ".")
        runs_dir = Path(composed.paths.log_dir) / str(composed.task_name) / "runs"
        placeholder = runs_dir / ".new-run"  # where Hydra would start a new one: beside the others
        composed.paths.output_dir = str(placeholder)
        continued = run_to_continue(requested[-1], placeholder, flat_config(composed))
    except Exception:  # the run reports whatever is wrong, in one line
        return args
    if continued is None or "'" in str(continued):
        return args
    return [*args, f"hydra.run.dir='{continued}'"]


def check_writable(args: list[str]) -> None:
    """Refuse, in one line before Hydra starts, a log or run directory named on the command line
    that cannot be written (Hydra would fail to create it with a traceback)."""
    for arg in args:
        key, _, value = arg.lstrip("+").partition("=")
        if key not in ("paths.log_dir", "hydra.run.dir", "hydra.sweep.dir") or not value or "$" in value:
            continue
        if "," in value:  # a sweep over folders: each job's is created by Hydra
            continue
        folder = Path(value.strip("'\""))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            print(
                f"error: {key}={value} cannot be written ({type(err).__name__}: {err.strerror or err}); "
                f"pass a folder this user can write",
                file=sys.stderr,
            )
            sys.exit(1)


def preflight(config_name: str, args: list[str]) -> None:
    """What every Hydra entry point checks on its command line before Hydra starts: folders it
    must write, and keys the config does not have."""
    check_writable(args)
    check_override_keys(config_name, args)
