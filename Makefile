# The two commands a new user runs: `make serve` and `make test`.
# Both create .venv and install the pinned dependencies on first use; afterwards they
# reinstall only when pyproject.toml or constraints.txt change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPOSE := $(VENV)/compose
COMPOSE_STAMP := $(COMPOSE)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint format constraints clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq -c constraints.txt -e ".[server,training,dev]"
	touch $(STAMP)

# docker-compose (for `docker-compose config` in the tests) needs pins of its own.
$(COMPOSE_STAMP): .ci/compose-requirements.txt
	test -x $(COMPOSE)/bin/python || $(PYTHON) -m venv $(COMPOSE)
	$(COMPOSE)/bin/python -m pip install -qq cython==0.29.37 setuptools==65.5.0 wheel==0.48.0
	$(COMPOSE)/bin/python -m pip install -qq --no-build-isolation -r .ci/compose-requirements.txt
	touch $(COMPOSE_STAMP)

serve: $(STAMP)
	$(BIN)/latentwire serve --host $(HOST) --port $(PORT)

test: $(STAMP) $(COMPOSE_STAMP)
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
