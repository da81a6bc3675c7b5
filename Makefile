# shipwarden — two commands on a fresh Debian machine: `make demo` and `make test`.
# Every target installs what it is missing first (system packages via apt-get,
# Python packages into .venv), so a fresh clone needs nothing else.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := nginx-core libnginx-mod-http-lua libnginx-mod-http-ndk wrk prometheus git sqlite3 curl \
                mariadb-server mariadb-client mariadb-backup haproxy iptables chromium chromium-driver poppler-utils \
                prometheus-alertmanager prometheus-node-exporter prometheus-blackbox-exporter
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps sysdeps pydeps demo test test-unit test-integration lint bench clean

deps: sysdeps pydeps

# System packages: installed only when something is missing (apt-get is slow).
sysdeps: .make/sysdeps
.make/sysdeps: Makefile
	@mkdir -p .make
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@# Debian's postinst may start a system nginx on :80; shipwarden runs its own instances.
	@-$(SUDO) nginx -s quit >/dev/null 2>&1 || true
	@touch $@

pydeps: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

demo: deps
	$(PY) -m shipwarden.demo

test: deps lint
	$(PY) -m pytest -q -n 2 --dist loadgroup tests

test-unit: pydeps
	$(PY) -m pytest -q tests/unit

test-integration: deps
	$(PY) -m pytest -q tests/integration tests/e2e

lint: pydeps
	$(VENV)/bin/lint-imports --config .importlinter
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy src

bench: deps
	@mkdir -p bench/results
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .make $(VENV) .pytest_cache build *.egg-info src/*.egg-info
