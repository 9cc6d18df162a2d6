"""Optuna's sweeper (hydra-optuna-sweeper), ending a study in which every trial failed the way any
sweep with a failed job ends: with the sweep's summary of its failed trials and exit status 1,
instead of optuna's "No trials are completed yet" traceback (``hparams_search=*_optuna`` use it)."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class SummarizingOptunaSweeper(OptunaSweeper):
    def sweep(self, arguments: list[str]) -> None:
        try:
            super().sweep(arguments)
        except ValueError as err:
            if "No trials are completed yet" not in str(err):
                raise
            from transferlab.report.sweep import summarize

            sweep_dir = Path(self.sweeper.config.hydra.sweep.dir)
            result = summarize([sweep_dir], str(self.sweeper.config.get("summary_metric") or "test/acc"))
            print(result["table"], end="")
            print(
                f"error: all {len(result['jobs'])} Optuna trials failed (their errors are listed above "
                f"and in {sweep_dir}/summary.csv); nothing to optimise",
                file=sys.stderr,
            )
            sys.exit(1)
