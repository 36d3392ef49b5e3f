# The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test test-python test-browser install superuser fakellm bench clean

# Environment: a virtualenv with exactly the locked versions (uv.lock), and the front-end
# packages from package-lock.json. Re-done only when a lock file changes.
$(VENV)/.installed: pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python 3.12 or newer is needed (found " + sys.version.split()[0] + ")")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv sync --locked --inexact --quiet
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py first_run_hint
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) chatsite.asgi:application

superuser: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py createsuperuser

test: install
	$(PY) -m pytest -q
	$(PY) -m pytest -q -p no:asyncio -o addopts="-p no:cacheprovider" tests/browser

fakellm: install
	$(PY) -m fakellm --port 9999

clean:
	rm -rf $(VENV)
