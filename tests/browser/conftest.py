"""The browser suite: Debian's chromium, driven by Playwright's sync API, against the app served
by Daphne in a child process, with the fake LLM as its model server.

Runs as its own pytest invocation (`-p no:asyncio`, see STACK.md). The Daphne process is forked
once per session after the test database exists, so it inherits the test database's name and the
settings changed here (the fake LLM's address). Tests share that database: each makes its own
user, so nothing needs flushing between tests while the server holds connections.
"""

from __future__ import annotations

import os

# Playwright's sync API runs an event loop in this thread; the ORM calls made by fixtures are
# still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

import json  # noqa: E402
import re  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import pytest  # noqa: E402
from channels.testing.live import make_application  # noqa: E402
from daphne.testing import DaphneProcess  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.db import connections  # noqa: E402
from django.test import Client  # noqa: E402

from tests.factories import make_user  # noqa: E402

# Debian's chromium unless CHROMIUM names another; scripts/need-chromium (run by `make test`)
# installs Debian's or says what to install.
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.exit(
            f"The browser tests need chromium at {CHROMIUM}: run `make test-browser` (installs"
            " Debian's chromium as root) or `sudo apt-get install chromium`, or set CHROMIUM",
            returncode=1,
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """A second process must open the same test database: on SQLite that needs a file (an
    in-memory database is private to its process). PostgreSQL's test name is set in settings."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "browser.sqlite3")


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker, django_db_modify_db_settings):
    """The test database, made whether or not a test carries a django_db mark: these tests reach
    it through the server process and through fixtures, never inside a test transaction."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    yield
    with django_db_blocker.unblock():
        connections.close_all()
        teardown_databases(config, verbosity=0)


@pytest.fixture(scope="session")
def server_url(django_db_setup, django_db_blocker, fake_llm_server) -> str:
    """Daphne serving the whole app (pages, static files, the socket) on a free port."""
    from django.conf import settings

    settings.LLM_BASE_URL = fake_llm_server.base_url
    settings.LLM_KIND = "openai"
    settings.LLM_MODEL = "fake-model"
    settings.LLM_API_KEY = ""
    settings.LLM_FALLBACK_MODELS = []
    # Titles stay on: the page shows the model's title when it arrives (conversations_changed).
    # The fake answers the title request with its default text, "tok0 tok1 ... tok7".
    settings.GENERATE_TITLES = True
    # The same (fast) hasher as the users made by tests/conftest.py's autouse fixture.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tests change rows (tool policies) from this process between turns: the server process
    # would see them up to AGENT_CACHE_SECONDS late, so it is forked without that cache.
    from agents import definitions

    definitions.AGENT_CACHE_SECONDS = 0.0
    process = DaphneProcess("127.0.0.1", partial(make_application, static_wrapper=ASGIStaticFilesHandler))
    process.daemon = True
    # Forked while pytest-django's database blocker is lifted, so the child may use the database;
    # and with no connection open, so the child shares none with this process.
    with django_db_blocker.unblock():
        connections.close_all()
        process.start()
    if not process.ready.wait(timeout=30):
        process.terminate()
        raise RuntimeError("Daphne did not start")
    yield f"http://127.0.0.1:{process.port.value}"
    process.terminate()
    process.join(timeout=10)


@pytest.fixture(scope="session")
def base_url(server_url):
    return server_url


@pytest.fixture
def fake(fake_llm_server):
    fake_llm_server.reset(config=True)
    return fake_llm_server


@pytest.fixture
def user(django_db_blocker):
    with django_db_blocker.unblock():
        return make_user()


@dataclass
class Watcher:
    """What a page did: requests, console messages, dialogs, CSP violations, page errors."""

    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        bad = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname not in LOCAL_HOSTS:
                bad.append(url)
        return bad

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if re.search(r"Content Security Policy|Refused to", m)]


def watch(page) -> Watcher:
    seen = Watcher()
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("websocket", lambda ws: seen.requests.append(ws.url))
    page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))

    def on_dialog(dialog):
        seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    # Violations also reach the page as events; keep them where a test can read them.
    page.add_init_script(
        "window.__csp = [];"
        "document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    return seen


def log_in(context, user, base: str) -> None:
    """Log in without the form: a session made by Django's test client, as a cookie."""
    client = Client()
    client.force_login(user)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": base}])


@pytest.fixture
def chat(page, server_url, user, fake, django_db_blocker):
    """A logged-in page on the empty chat, watched."""
    with django_db_blocker.unblock():
        log_in(page.context, user, server_url)
    page.watcher = watch(page)
    page.goto(server_url + "/")
    try:
        expect_connected(page)
    except Exception as exc:
        raise AssertionError(f"the page did not connect: {page.watcher}") from exc
    return page


def expect_connected(page, timeout: float = 10_000) -> None:
    page.wait_for_selector('#connection[data-state="open"]', timeout=timeout)


def directive(**kw) -> str:
    return "fake: " + json.dumps(kw)


def send(page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def answers(page):
    return page.locator("main article.message.assistant")


def last_answer(page):
    return answers(page).last


def tokens(n: int, start: int = 0) -> str:
    """The fake's deterministic text: "tok0 tok1 ... " (with a trailing space)."""
    return "".join(f"tok{i} " for i in range(start, n))


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), animations="disabled")
