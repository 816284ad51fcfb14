# One entry point for people and CI alike. `make demo` and `make test` each create .venv,
# install what they need and run; nothing is assumed to be installed but python3 (>= 3.11).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/gridpilot check-config deploy/examples/reference-site.toml
	@echo
	$(BIN)/gridpilot plan

test: lint typecheck unit

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/python -m pytest --cov --cov-branch --cov-report=term

# Optimizer timing on a synthetic site; medians of several runs (see README).
bench: $(INSTALLED)
	$(BIN)/gridpilot bench plan --groups 100 --steps 288
	$(BIN)/gridpilot bench plan --groups 1000 --steps 288

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache .pytest_cache .hypothesis
