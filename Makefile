# Everything a fresh machine needs: `make run` serves the app, `make test` runs the tests.
# `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The shared data beside the checkout; override for another location.
SHARED ?= $(abspath ../shared)
export NLTK_DATA ?= $(SHARED)/nltk_data
export ACLIMDB_ARCHIVE ?= $(SHARED)/data/aclImdb_v1_labeled.tar.gz
PYTEST_ARGS ?=
# make run MODEL=PRESET: serve a model of that preset (rnn, cnn, rcnn, cnn+rcnn, book,
# default) from models/PRESET, training it there first if it is not yet.
MODEL ?=
DEEP_PRESETS := rnn cnn rcnn
ARGS ?=

.PHONY: help run test test-fast lint train bench bench-serving bench-peers browser services axe clean deep

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{printf "make %-14s %s\n", $$1, $$2}'

# The runtime: pinned requirements, then this project's package (editable, so
# that the checkout's code is what runs) with its console script `sentiment`;
# installing it builds the text kernels' C extension (setup.py), again
# whenever kernels.pyx changes.
$(VENV)/.runtime: requirements.txt pyproject.toml setup.py sentiment/text/kernels.pyx
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -r requirements-bench.txt
	touch $@

# The Keras models (JAX backend): training them and serving a "kind": "keras"
# model folder. Not needed to serve the committed linear model (make run).
$(VENV)/.deep: $(VENV)/.runtime requirements-deep.txt
	$(PY) -m pip install --quiet -r requirements-deep.txt
	touch $@

deep: $(VENV)/.deep ## install the Keras models' requirements (requirements-deep.txt) into .venv

run: $(VENV)/.runtime $(if $(MODEL),models/$(MODEL)/manifest.json) ## serve the app on http://127.0.0.1:5000 with the committed model (MODEL=cnn: a trained preset; ARGS: app.py options)
	$(if $(MODEL),SENTIMENT_MODEL_DIR=models/$(MODEL)) $(PY) app.py $(ARGS)

# The cnn and rcnn presets answering together, from their trained folders.
models/cnn+rcnn/manifest.json: models/cnn/manifest.json models/rcnn/manifest.json
	$(PY) -m train.deep.ensemble models/cnn models/rcnn --out models/cnn+rcnn

# A preset trained from the archive ($$ACLIMDB_ARCHIVE, else downloaded) into models/.
models/%/manifest.json: $(VENV)/.runtime
	$(if $(filter $*,$(DEEP_PRESETS)),$(MAKE) deep)
	$(PY) -m train --preset $* --out models/$*

services: ## install Debian's PostgreSQL and Redis servers, which the tests start as throwaway instances
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || ! command -v redis-server >/dev/null; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			postgresql redis-server >/dev/null; \
	fi

browser: ## install Debian's Chromium for the browser test (never a downloaded one)
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver fonts-liberation >/dev/null; \
	fi

# axe-core (npm, pinned) for the accessibility test, injected into pages in Chromium.
AXE := .tools/node_modules/axe-core/axe.min.js
$(AXE):
	npm install --silent --no-audit --no-fund --prefix .tools axe-core@4.14.1

axe: $(AXE) ## install axe-core (npm, pinned) into .tools/ for the accessibility test

test: $(VENV)/.dev $(VENV)/.deep browser services $(AXE) ## install the test tools, Keras, a browser, PostgreSQL, Redis and axe-core, run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.dev ## the quick tests (under a minute): SQLite only, no slow, browser or real-data test
	$(PY) -m pytest -m "not slow and not browser and not postgresql" $(PYTEST_ARGS)

lint: $(VENV)/.dev ## ruff over everything, mypy over the package
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

train: $(VENV)/.runtime ## retrain the default model into pkl_objects/ (ARGS: python -m train options)
	$(PY) -m train $(ARGS)

bench: $(VENV)/.runtime ## book preset vs default: accuracy, speed, memory, size, latency
	$(PY) -m bench.model $(ARGS)

bench-serving: $(VENV)/.runtime ## requests/s and latency of the served app, against the tutorial's
	$(PY) -m bench.serving $(ARGS)

bench-peers: $(VENV)/.dev ## this project against Vowpal Wabbit, fastText and scikit-learn, one run
	$(PY) -m bench.peers $(ARGS)

clean: ## remove the virtual environment, caches and the training CSV
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache data .tools
