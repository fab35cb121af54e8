# LACoS-BLOOM course. Two commands do everything on a fresh machine:
#   make course   # set up .venv, run every notebook headless (PROFILE=cpu by default) into build/
#   make test     # set up .venv, run the package tests and nbval over notebooks/ (ci profile)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=
STAMP := $(VENV)/.lacos-installed

# Real data from the shared folder when it is there; otherwise the Hub or generated data is used.
# DATA=none runs as a newcomer's clone does (no data folder: the Hub or generated data).
DATA ?= auto
ifeq ($(DATA),none)
export LACOS_DATA_DIR :=
else
ifeq ($(strip $(LACOS_DATA_DIR)),)
ifneq ($(wildcard ../shared/data/README.md),)
export LACOS_DATA_DIR := $(abspath ../shared/data)
endif
endif
endif
export MPLBACKEND ?= Agg
export TOKENIZERS_PARALLELISM ?= false
export PYDEVD_DISABLE_FILE_VALIDATION ?= 1
# headless runs (nbval, course runner) draw explorer widgets as static figures
course test test-fast: export LACOS_STATIC_WIDGETS := 1

.PHONY: help setup course test test-fast lint lab bench student env clean

help:
	@echo "make course [PROFILE=cpu|ci|colab|paper]  run the whole course headless into build/"
	@echo "make test [DATA=none]                      package tests + nbval over notebooks (ci profile);"
	@echo "                                           DATA=none: without the data folder, as a newcomer"
	@echo "make test-fast                             same without the slow real-model tests"
	@echo "make lint                                  ruff (rules in pyproject.toml) over code and notebooks"
	@echo "make lab                                   JupyterLab on the course"
	@echo "make bench                                 side-by-side benchmarks (print ratios)"
	@echo "make student                               badges + install cells from pyproject [tool.lacos], student copies"
	@echo "make env                                   environment check ([OK]/[FAIL] per requirement)"

# CPU torch first (from the local wheel cache / PyPI CPU build): installing it after its
# dependents would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,offline-model]"
	@touch $(STAMP)

setup: $(STAMP)

env: setup
	$(PY) -m lacos_helpers env

# Runs and chapter-5 tables of `make course` stay in build/runs (reused by the next `make
# course`); `make test` trains in a fresh build/test-runs every time.
course: setup
	@echo "data: $${LACOS_DATA_DIR:-<unset: Hub or generated>}"
	LACOS_RUN_DIR=$${LACOS_RUN_DIR:-$(abspath build/runs)} \
		$(PY) -m lacos_helpers.course --profile $(PROFILE) --out build

test: setup
	rm -rf build/test-runs
	LACOS_PROFILE=ci LACOS_RUN_DIR=$(abspath build/test-runs) $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		-p no:cacheprovider -ra $(PYTEST_ARGS)

test-fast: setup
	rm -rf build/test-runs
	LACOS_PROFILE=ci LACOS_RUN_DIR=$(abspath build/test-runs) $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		-p no:cacheprovider -ra -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check lacos_helpers tests benchmarks tools notebooks .ci

lab: setup
	$(VENV)/bin/jupyter lab notebooks

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

student: setup
	$(PY) -m lacos_helpers.course.publish notebooks
	$(PY) -m lacos_helpers.course.student notebooks student

clean:
	rm -rf build .pytest_cache

# The tests and notebooks with Google Colab's versions of the libraries it shares with the course
# (tests/data/colab/pip-freeze.gpu.txt) in .colab-venv, rebuilt each time; COLAB_ARGS=--reuse
# keeps an existing one; PYTEST_ARGS narrows the run (default: tests notebooks).
.PHONY: colab-versions
colab-versions:
	bash tools/colab_versions_check.sh $(COLAB_ARGS) $(PYTEST_ARGS)
