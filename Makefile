# make run   - create .venv if missing, install, start the dashboard on the embedded probes
# make test  - create .venv if missing, install, run the whole test suite
# make test-fast - the day-to-day loop: everything but the browser, load/scale-out and full-MNIST tests
# make lint  - ruff (lint and import order) over the package, the tests and the benchmarks
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

DATA_ROOT ?= $(firstword $(wildcard ../shared/mnist) $(REPGEOM_DATA_ROOT))

.PHONY: run test test-fast lint bench loadtest install clean

$(STAMP): requirements.txt requirements-dev.txt benchmarks/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -r benchmarks/requirements.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) app.py

test: $(STAMP)
	$(PY) -m pytest

# Two test processes, each computing on one thread: two processes of two OpenMP threads each on
# two cores make t-SNE and BLAS threads spin against each other (a 1.7 s test took 38 s).
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	$(PY) -m pytest -m "not browser and not load and not full_mnist" -p no:cacheprovider -n 2 --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	mkdir -p artifacts
	$(PY) -m benchmarks.bench $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --json artifacts/bench.json

loadtest: $(STAMP)
	mkdir -p artifacts
	$(PY) -m benchmarks.loadtest --users 50 --duration 300 $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) --json artifacts/loadtest.json

clean:
	rm -rf $(VENV) .pytest_cache artifacts
