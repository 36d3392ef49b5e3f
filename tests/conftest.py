import pytest


def pytest_configure(config: pytest.Config) -> None:
    # The browser suite runs without pytest-asyncio (Playwright's sync API needs that), so the
    # async fixtures are registered only where the plugin is loaded.
    if config.pluginmanager.has_plugin("asyncio"):
        from tests import async_fixtures

        config.pluginmanager.register(async_fixtures, "chatsite-async-fixtures")
