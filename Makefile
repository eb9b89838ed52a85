# Two entry points that work on a fresh machine with only Python:
#   make demo   - set up .venv and run the demo on embedded defaults
#   make test   - set up .venv and run lint, type checks and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is an optional extra; the CPU wheel is pinned so pip never pulls a CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all,dev]"
	# Tests of partitioned jobs: pandas (a batch format), s3fs with moto's S3 server, and
	# Dask DataFrame (a benchmark peer). A step of their own, pinned: resolved together
	# with the rest, pip backtracks through boto3 releases until it gives up.
	$(PY) -m pip install --quiet "pandas==3.1.1" "s3fs==2026.9.0" "moto[server]==5.2.6" \
		"boto3==1.43.117" "dask[dataframe]==2026.8.0"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/batchpilot demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q --cov --cov-report=term -p no:cacheprovider

bench: $(STAMP)
	$(VENV)/bin/batchpilot bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
