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
	test -x $(VENV)/bin/pip || $(PY) -m ensurepip --default-pip >/dev/null
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(VENV)/bin/uv sync --locked --inexact --quiet
	touch $@

# Front-end libraries: exactly the versions in package-lock.json (npm ci), the few browser
# builds the page loads copied into static/vendor/ (gitignored). Nothing comes from a CDN at run
# time and nothing from node_modules is committed.
VENDOR := static/vendor
$(VENDOR)/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18 or newer) is needed for the front-end packages"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)
	cp node_modules/markdown-it/dist/browser/markdown-it.esm.min.mjs $(VENDOR)/markdown-it.js
	cp node_modules/dompurify/dist/purify.es.mjs $(VENDOR)/purify.js
	cp node_modules/@highlightjs/cdn-assets/es/highlight.min.js $(VENDOR)/highlight.js
	cp node_modules/@highlightjs/cdn-assets/styles/github.min.css $(VENDOR)/highlight-light.css
	cp node_modules/@highlightjs/cdn-assets/styles/github-dark.min.css $(VENDOR)/highlight-dark.css
	sed -i '/sourceMappingURL=/d' $(VENDOR)/*.js
	for p in markdown-it dompurify @highlightjs/cdn-assets; do cp node_modules/$$p/LICENSE $(VENDOR)/LICENSE.$$(basename $$p); done
	touch $@

install: $(VENV)/.installed $(VENDOR)/.installed

run: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py first_run_hint --url http://$(HOST):$(PORT)
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) chatsite.asgi:application

superuser: install
	$(PY) manage.py migrate --no-input
	$(PY) manage.py createsuperuser

test: install
	$(PY) -m pytest -q
	$(PY) -m pytest -q -p no:asyncio -o addopts="-p no:cacheprovider" -W ignore::pytest.PytestConfigWarning tests/browser

fakellm: install
	$(PY) -m fakellm --port 9999

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
