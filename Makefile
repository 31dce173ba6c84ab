# Quick start: `make demo` and `make test`. Each creates .venv and installs the project first.
# `make fonts` adds the handwriting fonts for synthetic data (npm, into ~/.cache/hccr/fonts).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test fonts lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hccr demo

fonts: $(STAMP)
	$(BIN)/hccr-data fonts install

test: $(STAMP)
	$(BIN)/ruff format --check hccr data_tools demo tests bench
	$(BIN)/ruff check hccr data_tools demo tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format hccr data_tools demo tests bench
	$(BIN)/ruff check --fix hccr data_tools demo tests bench

clean:
	rm -rf $(VENV) build *.egg-info
