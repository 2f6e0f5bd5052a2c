# The two commands a new user runs: `make serve` and `make test`.
# Both create .venv and install the pinned dependencies on first use; afterwards they
# reinstall only when pyproject.toml or constraints.txt change.
# The shipped weights are a distribution of their own, latentwire-weights (shared/zoo/),
# which the server and training extras need: it is installed from the checkout beside the
# editable latentwire (whose own zoo folder, holding the same files, is read first). So is
# latentwire-web (client/js/: the page and the JS decoder with its runtime, which the server
# extra needs); it is built from client/js/node_modules, so npm ci (js-deps) runs first, and
# the server reads the checkout's client/js first.

JS := client/js
JS_STAMP := $(JS)/node_modules/.installed
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPOSE := $(VENV)/compose
COMPOSE_STAMP := $(COMPOSE)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test test-packaging dist docs lint format constraints clean system-packages js-deps

$(STAMP): pyproject.toml constraints.txt shared/zoo/pyproject.toml $(JS)/pyproject.toml | $(JS_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq -c constraints.txt ./shared/zoo ./$(JS) -e ".[server,training,dev]"
	touch $(STAMP)

# docker-compose (for `docker-compose config` in the tests) needs pins of its own.
$(COMPOSE_STAMP): .ci/compose-requirements.txt
	test -x $(COMPOSE)/bin/python || $(PYTHON) -m venv $(COMPOSE)
	$(COMPOSE)/bin/python -m pip install -qq cython==0.29.37 setuptools==65.5.0 wheel==0.48.0
	$(COMPOSE)/bin/python -m pip install -qq --no-build-isolation -r .ci/compose-requirements.txt
	touch $(COMPOSE_STAMP)

serve: $(STAMP)
	$(BIN)/latentwire serve --host $(HOST) --port $(PORT)

# Debian packages the tests use: nginx (the routing test runs the real one), chromium and
# chromium-driver (the page's tests drive a real headless browser through Selenium), and
# nodejs and npm (the JavaScript decoder's tests) unless a node and an npm are already
# installed (e.g. NodeSource's nodejs, which brings its own npm and conflicts with Debian's).
DEBIAN_PACKAGES := nginx chromium chromium-driver
NODE_PACKAGES := nodejs npm
system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing $(NODE_PACKAGES)"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else echo "make: the tests need the Debian packages:$$missing (apt-get install$$missing as root)"; fi; \
	fi

# The JavaScript decoder's packages (client/js), exactly as package-lock.json pins them;
# reinstalled only when the lockfile changes. No install scripts: none is needed.
$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json | system-packages
	cd $(JS) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(JS_STAMP)

js-deps: $(JS_STAMP)

test: $(STAMP) $(COMPOSE_STAMP) system-packages $(JS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# Builds the distributions and installs them into fresh venvs (a few minutes; CI runs it).
test-packaging: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest -q -m packaging -s

# sdists and wheels of latentwire, latentwire-weights and latentwire-web, in dist/.
dist: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m build --outdir dist shared/zoo
	$(BIN)/python -m build --outdir dist $(JS)

# The docs made from the code: the settings table, latentwire.env.
docs: $(STAMP)
	$(BIN)/python docs/generate.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin after changing pyproject.toml: resolve in a scratch venv and freeze it.
constraints: $(JS_STAMP)
	rm -rf /tmp/latentwire-pin && $(PYTHON) -m venv /tmp/latentwire-pin
	/tmp/latentwire-pin/bin/pip install --quiet ./shared/zoo ./$(JS) -e ".[server,training,dev]"
	{ head -2 constraints.txt; /tmp/latentwire-pin/bin/pip freeze --exclude-editable \
		| grep -v -e '^latentwire-weights==' -e '^latentwire-web=='; } > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache dist $(JS)/node_modules
