# make run   - create .venv if missing, install, start the dashboard on the embedded probes
# make test  - create .venv if missing, install, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA_ROOT ?= $(firstword $(wildcard ../shared/mnist) $(REPGEOM_DATA_ROOT))

.PHONY: run test bench loadtest install clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	mkdir -p artifacts
	$(PY) -m repgeom bench $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --json artifacts/bench.json

loadtest: $(STAMP)
	mkdir -p artifacts
	$(PY) -m repgeom.loadtest --users 50 --duration 300 $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --json artifacts/loadtest.json

clean:
	rm -rf $(VENV) .pytest_cache artifacts
