"""Reports on finished runs: the typed job record (``jobs.py``), the one formatter (``format.py``) and
statistics (``stats.py``), the sweep summary (``sweep.py``) and the sections built on it: model
selection without target labels (``selection.py``) and transferability scores against outcomes
(``transferability.py``)."""
