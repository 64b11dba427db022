# Everything a fresh machine needs: `make run` serves the app, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The shared data beside the checkout; override for another location.
SHARED ?= $(abspath ../shared)
export NLTK_DATA ?= $(SHARED)/nltk_data
export ACLIMDB_ARCHIVE ?= $(SHARED)/data/aclImdb_v1_labeled.tar.gz
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: run test test-fast train bench bench-serving lint browser clean help

help:
	@echo "make run    - serve the app on http://$(HOST):$(PORT) with the committed model"
	@echo "make test   - install test tools and a browser, run the whole test suite"
	@echo "make train  - retrain the default model into pkl_objects/ (needs the aclImdb archive)"
	@echo "make bench  - book preset vs default: accuracy, speed, memory, size, latency"
	@echo "make bench-serving - requests/s and latency of the running app"
	@echo "make lint   - ruff"

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(PY) app.py --host $(HOST) --port $(PORT)

# Debian's Chromium for the browser test (Playwright drives it; it never downloads one).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver fonts-liberation >/dev/null; \
	fi

test: $(VENV)/.dev browser
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

train: $(VENV)/.runtime
	$(PY) -m train

bench: $(VENV)/.runtime
	$(PY) -m bench.model

bench-serving: $(VENV)/.runtime
	$(PY) -m bench.serving

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
