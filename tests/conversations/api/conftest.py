"""The /v1 API's tests: the app served by uvicorn in a thread of the test process (so that a
test's rows are the server's), the official openai SDK as the client, the fake model server
upstream. The Daphne-specific behaviour (a client that disconnects) is tested against a real
Daphne process in test_disconnect.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import openai
import pytest
import uvicorn

from accounts.api_keys import do_create_api_key
from tests.conversations.processes import ROOT, serve, server_env
from tests.factories import make_user


@dataclass
class ApiServer:
    base_url: str
    port: int


@pytest.fixture(autouse=True)
def _no_earlier_key_failures():
    # The tests' wrong keys all come from 127.0.0.1, counted in the cache (Redis with
    # REDIS_URL, where they outlive the run): each test starts with none.
    from django.core.cache import cache

    from accounts import throttle

    key = throttle._api_key_address_key("127.0.0.1")
    cache.delete_many([key, throttle._since(key)])


@pytest.fixture
def api_server(transactional_db, fake_llm):
    from chatsite.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(application, lifespan="off", log_level="warning",
                                           ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        time.sleep(0.01)
    yield ApiServer(base_url=f"http://127.0.0.1:{port}/v1", port=port)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def api_user(transactional_db):
    return make_user(username="ada")


@pytest.fixture
def api_key(api_user) -> str:
    return do_create_api_key(user=api_user, name="tests")[1]


@pytest.fixture
def client(api_server, api_key) -> openai.OpenAI:
    # No retries: a test sees each status once, as the SDK's exception class.
    return openai.OpenAI(base_url=api_server.base_url, api_key=api_key, max_retries=0,
                         timeout=30)


@dataclass
class DaphneApi:
    port: int
    key: str
    db: object  # the SQLite file's Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


def daphne_api(fake_llm_server, tmp_path, **env):
    """A real Daphne process and an API key of its one user (made by create_api_key)."""
    with serve(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path,
               **env) as (port, _session, _proc, db):
        done = subprocess.run(
            [sys.executable, "manage.py", "create_api_key", "bench0"], cwd=ROOT, check=True,
            env=server_env(fake_base_url=fake_llm_server.base_url, tmp_path=tmp_path),
            capture_output=True, text=True, timeout=60)
        yield DaphneApi(port=port, key=done.stdout.strip(), db=db)


@pytest.fixture(scope="session")
def shared_daphne_api(fake_llm_server, tmp_path_factory):
    """One Daphne for the tests that only need one (each starts ~5 s of processes)."""
    yield from daphne_api(fake_llm_server, tmp_path_factory.mktemp("daphne-api"))
