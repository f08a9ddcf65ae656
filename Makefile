# The two set-up commands in the README are `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo install test lint bench

$(BIN)/chestx: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -q -e . --group test
	touch $@

install: $(BIN)/chestx

## demo: install, then serve the shipped model at http://127.0.0.1:8000 (no AWS account needed)
demo: install
	$(BIN)/chestx serve --host 127.0.0.1 --port 8000

## test: install system and Python dependencies (apt needs root or sudo), lint, run every test
test:
	bash .ci/install $(VENV)
	$(BIN)/ruff check chestx tests benchmarks
	$(BIN)/pytest

lint:
	$(BIN)/ruff check chestx tests benchmarks

## bench: the core, serving and input-gate benchmarks (print Markdown tables)
bench: install
	$(BIN)/python benchmarks/core_bench.py
	$(BIN)/python benchmarks/serve_bench.py
	$(BIN)/python benchmarks/gate_bench.py
