# vggsweep — `make help` lists the targets. Every target creates .venv first when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STUDY  ?= activations
ARGS   ?=
PORT   ?= 5000

.PHONY: help install demo test test-all ui sweep leaderboard bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install vggsweep with its dependencies

demo: install  ## a small real multirun on the bundled digits (offline): 4 jobs x 2 trials
	$(PY) -m vggsweep -m model=cnn,mlp activation=relu,tanh data=digits budget=smoke experiment=demo

test: install  ## the test suite (under 10 minutes on 2 cores)
	$(PY) -m pytest -q

test-all: install  ## the test suite including slow tests (real MNIST)
	$(PY) -m pytest -q -m "slow or not slow"

ui: install  ## the MLflow UI on http://127.0.0.1:$(PORT) over ./mlflow.db
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(PORT)

sweep: install  ## a reference study: make sweep STUDY=grid64 ARGS='data.path=../shared/data/mnist'
	$(PY) -m vggsweep study=$(STUDY) $(ARGS)

leaderboard: install  ## print a leaderboard: make leaderboard ARGS='--experiment demo'
	$(PY) -m vggsweep.leaderboard $(ARGS)

bench: install  ## benchmarks (print figures, assert nothing): make bench ARGS=...
	$(PY) bench/families.py $(ARGS)

clean:  ## remove sweep outputs (keeps mlflow.db and tuner_state)
	rm -rf multirun outputs
