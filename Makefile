# The two commands a newcomer needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test test-python test-browser install need need-chromium superuser fakellm bench clean

# What a fresh machine may lack, checked before anything is installed or run; each missing thing
# stops with one line saying what to install. Chromium (browser tests only): scripts/need-chromium.
need:
	@{ test -n "$(PYTHON)" && $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; } 2>/dev/null || { \
	  echo "Python 3.12 or newer is needed (found: $$($(PYTHON) --version 2>/dev/null || echo none)): install one (your system's python3.12 package, or pyenv), or run make with PYTHON=/path/to/python3.12" >&2; exit 1; }
	@command -v npm >/dev/null && node -e 'process.exit(parseInt(process.versions.node) < 18 ? 1 : 0)' 2>/dev/null || { \
	  echo "Node.js 18 or newer with npm is needed for the front-end packages (found: $$(node --version 2>/dev/null || echo none)): run \`sudo apt-get install nodejs npm\`" >&2; exit 1; }

need-chromium:
	@scripts/need-chromium

# $(call step,WHAT,COMMAND): COMMAND with its output kept in a log; if it fails, one line: WHAT,
# the log's first error line (or its last line), and where the log is. WHAT has no comma.
step = echo '$(2)'; log=$$(mktemp -t chatsite-make.XXXXXX); if $(2) >$$log 2>&1; then rm -f $$log; else \
  why=$$({ grep -m1 -i 'error:' $$log || grep -v '^[[:space:]]*$$' $$log | tail -n 1; } | cut -c1-200); \
  echo "$(1) failed ($${why:-no output}; full output in $$log)" >&2; exit 1; fi

# Environment: a virtualenv with exactly the locked versions (uv.lock), and the front-end
# packages from package-lock.json. Re-done only when a lock file changes.
$(VENV)/.installed: pyproject.toml uv.lock | need
	@test -x $(PY) || { $(call step,Making the virtualenv with $(PYTHON) -m venv (on Debian: apt-get install python3-venv),$(PYTHON) -m venv $(VENV)); }
	test -x $(VENV)/bin/pip || $(PY) -m ensurepip --default-pip >/dev/null
	@$(call step,Installing uv from PyPI,$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9)
	@$(call step,Installing the locked Python packages from PyPI,$(VENV)/bin/uv sync --locked --inexact --quiet)
	touch $@

# Front-end libraries: exactly the versions in package-lock.json (npm ci), the few browser
# builds the page loads copied into static/vendor/ (gitignored). Nothing comes from a CDN at run
# time and nothing from node_modules is committed.
VENDOR := static/vendor
$(VENDOR)/.installed: package.json package-lock.json | need
	@$(call step,Installing the front-end packages from the npm registry,npm ci --no-audit --no-fund --loglevel=error)
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

# The whole suite: the Python suite, then the browser suite in a second pytest process (Playwright's
# sync API cannot share one with pytest-asyncio). Everything it needs is checked first.
test: need need-chromium test-python test-browser

test-python: install
	$(PY) -m pytest -q

test-browser: need-chromium install
	$(PY) -m pytest -q -p no:asyncio -o addopts="-p no:cacheprovider" -W ignore::pytest.PytestConfigWarning tests/browser

fakellm: install
	$(PY) -m fakellm --port 9999

clean:
	rm -rf $(VENV) node_modules $(VENDOR)
