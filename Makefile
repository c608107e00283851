# Each target creates .venv if missing and installs fasd into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint docs demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Everything: lint, then the whole suite (slow tests included; docs are built by a test).
test: lint
	$(BIN)/python -m pytest -q

# The quick subset for the edit-test loop: tests marked slow (> ~20 s each) are deselected.
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check fasd tests bench

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir runs/site

demo: $(STAMP)
	$(BIN)/fasd demo --out runs/demo

bench: $(STAMP)
	$(BIN)/python bench/cache_throughput.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/store_io.py

clean:
	rm -rf $(VENV) runs .pytest_cache site
