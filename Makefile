# tiw-emulator: `make run` plays the demo, `make test` runs lint, types and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8765

.PHONY: run serve test lint bench image screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# setuptools announces how it made the editable install with a UserWarning; it is no news
	# here (tests/test_packaging.py builds the real wheel and fails on any setuptools warning).
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Exit status 3 from the CLI means the port could not be bound: say how to pick another.
PORT_HINT = if [ $$rc -eq 3 ]; then echo "make $@: port $(PORT) is not free; try another," \
	"e.g. make $@ PORT=$$(( $(PORT) + 1 ))" >&2; fi; exit $$rc

run: $(STAMP)
	@$(BIN)/tiw-emulator demo --port $(PORT); rc=$$?; $(PORT_HINT)

serve: $(STAMP)
	@$(BIN)/tiw-emulator serve --port $(PORT); rc=$$?; $(PORT_HINT)

lint: $(STAMP)
	$(BIN)/ruff check emulator tests examples bench docs
	$(BIN)/ruff format --check emulator tests examples bench docs
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: lint
	@$(BIN)/python -m pytest -q -n 2; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(BIN)/python -m bench

# The README's dashboard screenshots (docs/dashboard-*.png), taken in headless Chromium with the
# browser tests' tooling (apt-get install -y chromium chromium-driver).
screenshots: $(STAMP)
	$(BIN)/python docs/screenshots.py --out docs

# The container image, with whichever engine is here: docker (if its daemon answers), buildah,
# then podman. `--format docker` because OCI image configs cannot carry a HEALTHCHECK.
# make image IMAGE=tiw-emulator:dev BASE=python:3.13-slim IMAGE_FLAGS='--build-arg EXTRAS=postgres'
IMAGE ?= tiw-emulator:latest
BASE ?=
IMAGE_FLAGS ?=
image:
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
		engine="docker build"; \
	elif command -v buildah >/dev/null 2>&1; then \
		engine="buildah bud --isolation chroot --format docker"; \
	elif command -v podman >/dev/null 2>&1; then \
		engine="podman build --format docker"; \
	else \
		echo "make image: no docker, buildah or podman here (apt-get install buildah)" >&2; \
		exit 1; \
	fi; \
	set -x; $$engine $(if $(BASE),--build-arg BASE=$(BASE)) $(IMAGE_FLAGS) -t $(IMAGE) .

clean:
	rm -rf $(VENV) build *.egg-info
