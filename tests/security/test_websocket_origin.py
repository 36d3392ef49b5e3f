"""A chat socket opens only from this site's own pages: its Origin must match scheme, host and
port, as Django's CSRF check requires of a form post, or be a trusted origin."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from chatsite.asgi import application
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)


async def opens(*, origin: str | None, host: str, extra: list | None = None) -> bool:
    client = AsyncClient()
    await client.aforce_login(await sync_to_async(make_user)())
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
               (b"host", host.encode()), *(extra or [])]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await comm.connect()
    await comm.disconnect()
    return connected


async def test_the_page_s_own_origin_opens_a_socket():
    assert await opens(origin="http://127.0.0.1:8000", host="127.0.0.1:8000")
    assert await opens(origin="http://localhost", host="localhost")


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:8939",  # another port of the same host: another application
    "https://localhost:1234",
    "https://127.0.0.1:8000",  # another scheme
    "http://127.0.0.1",  # default port is not 8000
    "http://evil.example",
    "null",
])
async def test_another_origin_of_an_allowed_host_is_refused(origin):
    assert not await opens(origin=origin, host="127.0.0.1:8000")


async def test_a_socket_without_an_origin_is_refused():
    assert not await opens(origin=None, host="127.0.0.1:8000")


async def test_a_host_not_in_allowed_hosts_is_refused_even_from_its_own_origin():
    assert not await opens(origin="http://evil.example", host="evil.example")


async def test_behind_a_tls_proxy_the_https_origin_opens_and_plain_http_does_not(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxied = [(b"x-forwarded-proto", b"https")]
    assert await opens(origin="https://chat.example.com", host="chat.example.com", extra=proxied)
    assert not await opens(origin="http://chat.example.com", host="chat.example.com",
                           extra=proxied)
    assert not await opens(origin="https://chat.example.com", host="chat.example.com")


async def test_trusted_origins_open_as_they_pass_csrf(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://portal.example.com", "https://*.apps.example.com"]
    assert await opens(origin="https://portal.example.com", host="chat.example.com")
    assert await opens(origin="https://wiki.apps.example.com", host="chat.example.com")
    assert not await opens(origin="http://wiki.apps.example.com", host="chat.example.com")
    assert not await opens(origin="https://evilapps.example.com", host="chat.example.com")
