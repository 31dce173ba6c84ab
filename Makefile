# Quick start: `make demo` and `make test`. Each creates .venv and installs the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hccr demo

test: $(STAMP)
	$(BIN)/ruff format --check hccr data_tools demo tests bench
	$(BIN)/ruff check hccr data_tools demo tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format hccr data_tools demo tests bench
	$(BIN)/ruff check --fix hccr data_tools demo tests bench

clean:
	rm -rf $(VENV) build *.egg-info
