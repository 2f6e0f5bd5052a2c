# The two commands a new user runs: `make serve` and `make test`.
# Both create .venv and install the pinned dependencies on first use; afterwards they
# reinstall only when pyproject.toml or constraints.txt change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint format constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq -c constraints.txt -e ".[server,training,dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/latentwire serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin after changing pyproject.toml: resolve in a scratch venv and freeze it.
constraints:
	rm -rf /tmp/latentwire-pin && $(PYTHON) -m venv /tmp/latentwire-pin
	/tmp/latentwire-pin/bin/pip install --quiet -e ".[server,training,dev]"
	{ head -2 constraints.txt; /tmp/latentwire-pin/bin/pip freeze --exclude-editable; } > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
