# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck docs pytest readme-table clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The CPU wheel of torch goes in first, so the package's `torch>=2.3` is already satisfied
# and pip does not fetch a multi-GB CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[all,dev,docs,trl]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/inforeg demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

# The documentation site; warnings are errors (maths renders offline with a bundled MathJax).
docs: $(STAMP)
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs docs/_build/html

test: lint typecheck docs pytest

readme-table: $(STAMP)
	$(BIN)/python -m inforeg.lab.readme

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache docs/_build docs/_generated
