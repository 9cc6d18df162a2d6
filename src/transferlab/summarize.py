"""Summarise sweeps: ``python -m transferlab.summarize <multirun dir> [<dir> ...] [--metric test/acc]``.

Reads each job's ``.hydra/overrides.yaml`` and ``metrics.json`` and writes, into the first
directory (or ``--out``): ``summary.csv`` (one row per job, failed ones included: the swept keys
first, then the metrics, the constant overrides last), ``summary.md`` (per combination of swept
values: n, mean ± std, each seed's value, a 95% t-interval where n ≥ 3, and where the sweep holds
its own control — the arm whose runs recorded their transfer term off: λ = 0, source only, no
distillation loss — each arm's gain over it, paired by seed) and, for
every swept parameter, a PNG of the metric against it with every seed's point. A sweep of
domain-adaptation runs also gets its model-selection report (``report/selection.py``): each
validator's pick among every configuration × validated epoch, per seed, its regret against the
oracle and its rank correlation with the target's test accuracy. A sweep of fine-tuning runs over
sources gets each transferability score against the measured outcomes
(``report/transferability.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from transferlab.report.sweep import summarize
from transferlab.utils.entry import close_progress_bars, user_errors

__all__ = ["SweepSummary", "main", "summarize"]


class SweepSummary(Callback):
    """A Hydra callback: at the end of a multirun, summarise its directory, print the table, and
    exit with status 1 when a job did not finish (its error is in the table and summary.csv)."""

    def __init__(self, metric: str = "test/acc") -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not any(sweep_dir.glob("**/.hydra/overrides.yaml")):
            return
        close_progress_bars()  # the table and the verdict are the last lines
        with user_errors():
            result = summarize([sweep_dir], self.metric, metric_key="summary_metric={}")
        print(result["table"], end="")
        print(f"sweep summary: {sweep_dir}/summary.md, summary.csv and {len(result['plots'])} plot(s)")
        not_done = [j for j in result["jobs"] if not j.done]
        if not_done:
            print(
                f"error: {len(not_done)} of {len(result['jobs'])} jobs did not finish (listed above)",
                file=sys.stderr,
            )
            sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dirs", nargs="+", type=Path)
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--control",
        default=None,
        help="key=value of the control arm (default: the arm whose runs say their transfer term was off)",
    )
    args = parser.parse_args()
    with user_errors():
        result = summarize(args.sweep_dirs, args.metric, args.out, args.control)
    print(result["table"], end="")
    out_dir = args.out or args.sweep_dirs[0]
    print(f"wrote summary.csv, summary.md and {len(result['plots'])} plot(s) in {out_dir}")


if __name__ == "__main__":
    main()
