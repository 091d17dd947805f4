# Warden: `make demo` runs the demo, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format typecheck bench lock clean

setup: $(STAMP)

# Re-installs only when the lock or the project metadata changed, so a second `make setup` is instant.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip sync --quiet --require-hashes --python $(BIN)/python requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/warden demo

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: setup
	$(BIN)/python -m pytest -q -x -m "not slow and not browser"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m benchmarks.load
	$(BIN)/python -m benchmarks.detection

# Re-resolve exact pins with hashes: runtime (requirements.lock, what the Docker image installs)
# and runtime + test/lint tools at the same versions (requirements-dev.lock). Needs the index.
lock: setup
	$(UV) pip compile --quiet requirements.in --python-version 3.11 --generate-hashes -o requirements.lock
	$(UV) pip compile --quiet requirements-dev.in --python-version 3.11 --generate-hashes -c requirements.lock \
		-o requirements-dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache var
