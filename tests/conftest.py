import pytest

from fakellm import run_in_thread


def pytest_configure(config: pytest.Config) -> None:
    # The browser suite runs without pytest-asyncio (Playwright's sync API needs that), so the
    # async fixtures are registered only where the plugin is loaded.
    if config.pluginmanager.has_plugin("asyncio"):
        from tests import async_fixtures

        config.pluginmanager.register(async_fixtures, "chatsite-async-fixtures")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CI runs the suite twice, on SQLite and on PostgreSQL with Redis. A test marked
    backend_free would run the second time exactly as the first (it reaches neither), so it
    runs in the SQLite pass only: about a third of the suite's time, spent twice for nothing."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        return
    skip = pytest.mark.skip(reason="backend_free: the SQLite pass runs it, unchanged")
    for item in items:
        if item.get_closest_marker("backend_free"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The real hasher costs about half a second per user made; tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_agent_cache():
    # Resolved agents are cached per process (agents.definitions), and a test's rows vanish at
    # its end by a rollback or a flush, which send no signal to clear it: each test starts
    # without it.
    from agents.definitions import clear_agent_cache

    clear_agent_cache()


@pytest.fixture(scope="session")
def fake_llm_server():
    """The fake OpenAI-compatible model server, one per test session."""
    server = run_in_thread()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """The fake, reset, and the app's default model server pointed at it."""
    fake_llm_server.reset(config=True)
    settings.LLM_BASE_URL = fake_llm_server.base_url
    settings.LLM_KIND = "openai"
    settings.LLM_MODEL = "fake-model"
    settings.LLM_API_KEY = ""
    settings.LLM_FALLBACK_MODELS = []
    # Titles cost a second request per conversation; tests of titles turn them on.
    settings.GENERATE_TITLES = False
    return fake_llm_server


@pytest.fixture(scope="session")
def oidc_server():
    """A real OpenID Connect provider (oauth2-mock-server in node), one per test session."""
    from tests.accounts.idp import start_idp

    server = start_idp()
    yield server
    server.stop()
