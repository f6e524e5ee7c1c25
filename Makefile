# Two entry points: `make demo` runs the demo, `make test` runs lint, types and the whole test suite.
# Both create a local virtualenv (.venv) on first use; set PYTHON to pick the interpreter (3.10+).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck pytest docs bench first-contact clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/miroenv demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check miroenv tests benchmarks
	$(BIN)/ruff format --check miroenv tests benchmarks

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy miroenv

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# The documentation site (mkdocs, strict: a broken link or a missing page fails the build).
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs pytest

# A new user's first contact: a clone of HEAD, pip-installed with no extras into a fresh venv under $TMPDIR.
first-contact:
	$(PYTHON) tests/cli/first_contact.py --clone .

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_episode.py

clean:
	rm -rf $(VENV) runs site .pytest_cache .mypy_cache .ruff_cache
