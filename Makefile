# The README's commands. `make demo` and `make test` each install what they need first.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := prometheus prometheus-alertmanager redis-server

.PHONY: setup system-deps python-deps demo test lint typecheck unit bench

setup: system-deps python-deps

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

python-deps:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'

demo: setup
	deeprest demo

lint:
	ruff check .
	ruff format --check .

typecheck:
	mypy

unit:
	$(PYTHON) -m pytest -q

test: setup lint typecheck unit

bench: setup
	$(PYTHON) bench/run.py
