# vggsweep — `make help` lists the targets. Every target creates .venv first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STUDY  ?= activations
ARGS   ?=
PORT   ?= 5000
# setuptools' note on editable installs of a package whose configs map from conf/ is informational:
# a quiet install shows only what needs attention.
PIP    := PYTHONWARNINGS='ignore:::setuptools.command.editable_wheel' $(PY) -m pip install -q \
          --disable-pip-version-check

.PHONY: help install demo lint test test-fast test-all ui server sweep leaderboard bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[test,server,lint]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install vggsweep with its dependencies

demo: install  ## a small real multirun on the bundled digits (offline, ~1½ min on 2 CPU cores)
	$(PY) -m vggsweep -m model=cnn,mlp activation=relu,tanh data=digits budget=demo experiment=demo

lint: install  ## ruff, and the layers of vggsweep/ checked by import-linter (pyproject.toml)
	$(VENV)/bin/ruff check vggsweep hydra_plugins tests bench
	$(VENV)/bin/lint-imports

test: install  ## the test suite but its slow tests (under 10 minutes on 2 cores: two workers)
	$(PY) -m pytest -q -n 2 --dist loadscope -m "not slow"

test-fast: install  ## the inner loop: the suite without its subprocess and slow tests
	$(PY) -m pytest -q -n 2 --dist loadscope -m "not slow and not subprocess"

test-all: install  ## the whole suite: + the slow tests (real MNIST, a real SLURM cluster, as root)
	$(PY) -m pytest -q -n 2 --dist loadscope -m "slow or not slow"

ui: install  ## the MLflow UI over ./mlflow.db on http://127.0.0.1:$(PORT): prints each experiment's link
	$(PY) -m vggsweep.ui --tracking-uri sqlite:///$(CURDIR)/mlflow.db --port $(PORT)

server: install  ## an MLflow tracking server on PostgreSQL at http://127.0.0.1:$(PORT) (Ctrl-C stops)
	$(PY) -m vggsweep.server --port $(PORT) --dir $(CURDIR)/mlflow_server $(ARGS)

sweep: install  ## a reference study: make sweep STUDY=grid64 ARGS='data.path=../shared/data/mnist'
	$(PY) -m vggsweep study=$(STUDY) $(ARGS)

leaderboard: install  ## print a leaderboard: make leaderboard ARGS='--experiment demo'
	$(PY) -m vggsweep.leaderboard $(ARGS)

bench: install  ## benchmarks (print figures, assert nothing): make bench ARGS=...
	$(PY) bench/families.py $(ARGS)

clean:  ## remove sweep outputs (keeps mlflow.db, tuner_state and mlflow_server)
	rm -rf multirun outputs
