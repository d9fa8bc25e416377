# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Each bootstraps .venv from the pinned requirements on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-slow bench clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

demo: $(VENV)/.runtime
	$(PY) -m gsfc_tf.cli demo --out out/demo

test: $(VENV)/.test
	$(PY) -m pytest -n 2

test-slow: $(VENV)/.test
	$(PY) -m pytest -n 2 -m slow

bench: $(VENV)/.test
	$(PY) -m benchmarks.run_all

clean:
	rm -rf out .pytest_cache
