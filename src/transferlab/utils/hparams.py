"""TensorBoard's HParams view of a sweep: one session per run, with its headline metrics.

Each run writes, through the HParams plugin's protos (``torch.utils.tensorboard.summary.hparams``),
a session-start record of its whole config into ``<run>/tensorboard/hparams``, and beside it the
scalars the HParams table shows: the final test accuracy, the best validation accuracy and the
method's own headline (``val/target_acc``, ``test/source_acc``). No run writes an experiment
config: TensorBoard then builds the table from every session under its logdir, so runs of
different experiments keep their own columns, and it lists the hyperparameters whose values
differ between the sessions (the swept ones) first. The final metrics live in the ``hparams``
run's own charts, on the same ``test/`` and ``val/`` cards as the training curves, instead of a
page of single-point ``hparams/*`` charts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger

HPARAMS_RUN = "hparams"  # the session's run, inside each run's TensorBoard directory
# what the HParams table shows, in this order, where a run has it
HEADLINE = ("test/acc", "val/acc_best", "val/target_acc", "test/source_acc")


def hparam_value(value: Any) -> float | str | bool:
    """A config value as the HParams plugin stores it (a number, a string or a bool)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return str(value)  # None, lists


def headline_metrics(metrics: dict[str, Any], best: dict[str, Any]) -> dict[str, float]:
    """The run's final ``metrics`` and the ``best`` value of each monitored metric (as
    ``<metric>_best``), restricted to ``HEADLINE``."""
    values = {k: v for k, v in metrics.items() if isinstance(v, float)}
    values |= {f"{k}_best": v for k, v in best.items() if isinstance(v, float)}
    return {k: values[k] for k in HEADLINE if k in values and not math.isnan(values[k])}


def trial_name(run_dir: Path) -> str:
    """The HParams table's trial ID: the run directory's name (a sweep job's number and swept
    values, ``3_lam=0.1,seed=1``), then its parent's (the sweep: unique, so runs never merge)."""
    return f"{run_dir.name} · {run_dir.parent.name}"


def name_session(session_start: Any, name: str) -> None:
    """Set the session-start summary's group name (what the table shows as the trial ID; the
    run's path, cut off in the column, otherwise)."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = session_start.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(content.content)
    data.session_start_info.group_name = name
    content.content = data.SerializeToString()


def log_final_hparams(
    loggers: list[Logger], hparams: dict[str, Any], metrics: dict[str, Any], best: dict[str, Any], step: int
) -> None:
    """Write the run's HParams session (its config) and headline metrics for every TensorBoard
    logger of the run; the other loggers (MLflow, W&B), which hold the config as the run's
    parameters already, get the headline metrics (``val/acc_best`` among them) at the last step."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    values = headline_metrics(metrics, best)
    for logger in loggers:
        if not values:
            continue
        if not isinstance(logger, TensorBoardLogger):
            logger.log_metrics(values, step=step)
            logger.save()
            continue
        writer = SummaryWriter(log_dir=str(Path(logger.log_dir) / HPARAMS_RUN))
        plain = {k: hparam_value(v) for k, v in hparams.items()}
        _, session_start, session_end = hparams_summaries(plain, {})
        name_session(session_start, trial_name(Path(logger.log_dir).parent))
        file_writer = writer._get_file_writer()
        file_writer.add_summary(session_start)
        file_writer.add_summary(session_end)
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)
        writer.close()


def close_loggers(loggers: list[Logger]) -> None:
    """End the run of a logger that keeps one open per process (W&B): the next job of a sweep
    running in the same process (the local launcher) starts its own instead of writing into it."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()
