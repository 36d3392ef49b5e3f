import pytest
from asgiref.sync import sync_to_async
from django.db import connections


@pytest.fixture(autouse=True)
async def _close_worker_connections():
    """Async tests reach the database from worker threads: close those connections afterwards,
    or PostgreSQL teardown hangs on them (STACK.md)."""
    yield
    await sync_to_async(connections.close_all)()
