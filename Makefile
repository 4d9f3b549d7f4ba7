# tiw-emulator: `make run` plays the demo, `make test` runs lint, types and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8765

.PHONY: run serve test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tiw-emulator demo --port $(PORT)

serve: $(STAMP)
	$(BIN)/tiw-emulator serve --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check emulator tests
	$(BIN)/ruff format --check emulator tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info
