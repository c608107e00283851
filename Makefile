# Each target creates .venv if missing and installs fasd into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/fasd demo --out runs/demo

bench: $(STAMP)
	$(BIN)/python bench/cache_throughput.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/store_io.py

clean:
	rm -rf $(VENV) runs .pytest_cache
