# The two commands a newcomer needs (see README):
#   make demo   set up .venv, install the project, run the main job (the transfer story) on offline data
#   make test   set up .venv, install the project, lint and run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision first, pinned as a pair (their wheels must match); override for
# another CUDA build or a CPU-only wheel, e.g. TORCH="torch torchvision --index-url ..."
TORCH ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo demo-readme test lint format bench tensorboard clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m transferlab.demo

# run the demo and copy its table into README.md's results section
demo-readme: setup
	$(PY) -m transferlab.demo --update-readme

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: setup
	$(PY) scripts/bench_train.py

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir logs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
