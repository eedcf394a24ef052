# The two commands of the README: `make dev` (local fleet) and `make test` (whole suite).
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test check unit bench proto proto-check conformance-fixtures clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("tfleet needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/tfleet dev

# What a reviewer would check, in seconds, before the suite: lint and layout (ruff check,
# ruff format --check: run `ruff format .` to fix), the import contracts (import-linter), types of the modules made strict so far (mypy). Configured in
# pyproject.toml; docs/architecture.md ("Checks") says why.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	scripts/in-installed-layout $(CURDIR)/$(BIN)/lint-imports --no-cache --config $(CURDIR)/pyproject.toml
	scripts/in-installed-layout $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml

test: $(STAMP) check
	@scripts/ensure-system-deps
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/python -m pytest -ra tests/unit $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.agent_latency

proto: $(STAMP)
	$(BIN)/python proto/generate.py

proto-check: $(STAMP)
	$(BIN)/python proto/generate.py --check

conformance-fixtures:
	$(PYTHON) tests/conformance/make_fixtures.py

clean:
	rm -rf $(VENV) build *.egg-info
