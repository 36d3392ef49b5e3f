"""The person's own page, /account/: their API keys (made, shown once, listed by prefix,
revoked) and the chat list's setting for API conversations. Plain forms: POST with the CSRF
token."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.api_keys import ApiKeyRefused, authenticate_api_key, do_create_api_key
from accounts.models import ApiKey
from tests.factories import make_user

pytestmark = pytest.mark.django_db

KEY = re.compile(r"sk-ch-[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def client(user):
    # With CSRF checks on, as a browser meets them: the forms must carry the token.
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    return c


def csrf(client: Client) -> str:
    page = client.get("/account/").content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def post(client: Client, url: str, data: dict | None = None):
    """What the page's form sends: its CSRF token and (the key form) its one-time value."""
    page = client.get("/account/").content.decode()
    values = {"csrfmiddlewaretoken": re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)}
    if url == "/account/keys/":
        values["once"] = re.search(r'name="once" value="([^"]+)"', page).group(1)
    return client.post(url, {**values, **(data or {})})


def test_sending_the_key_form_again_makes_no_second_key_and_shows_none(client):
    page = client.get("/account/").content.decode()
    form = {"csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                                             page).group(1),
            "once": re.search(r'name="once" value="([^"]+)"', page).group(1),
            "name": "laptop", "expires": "30"}
    first = client.post("/account/keys/", form)
    assert first.status_code == 200 and KEY.search(first.text)
    again = client.post("/account/keys/", form)  # the browser's reload of that answer
    assert again.status_code == 409 and not KEY.search(again.text)
    assert "is not shown again" in again.text
    assert ApiKey.objects.count() == 1


def test_the_page_needs_a_login_and_the_chat_page_links_to_it(client):
    for url in ("/account/",):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    for url in ("/account/keys/", "/account/keys/1/revoke/", "/account/preferences/"):
        response = Client().post(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not ApiKey.objects.exists()
    assert '<a href="/account/" class="account-link">Account</a>' in client.get("/").text


def test_the_page_has_no_inline_script_and_forms_carry_the_csrf_token(client):
    response = client.get("/account/")
    assert response.status_code == 200
    html = response.text
    assert "<script" not in html and "style=" not in html
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    forms = html.count("<form")
    assert forms >= 3 and html.count('name="csrfmiddlewaretoken"') == forms
    # Without the token, nothing is made.
    assert Client(enforce_csrf_checks=True).post("/account/keys/").status_code in (302, 403)
    refused = client.post("/account/keys/", {"name": "x", "expires": "never"})
    assert refused.status_code == 403 and not ApiKey.objects.exists()


def test_a_new_key_is_shown_once_and_then_only_by_its_prefix(client, user):
    response = post(client, "/account/keys/", {"name": "laptop", "expires": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    shown = KEY.findall(response.text)
    assert len(set(shown)) == 1
    raw = shown[0]
    assert "won't be shown again" in response.text
    assert authenticate_api_key(raw=raw, address=None).user == user
    key = ApiKey.objects.get(user=user)
    assert key.name == "laptop"
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    # Not kept anywhere: the session holds nothing of it, and the page, loaded again, lists the
    # key by its prefix only.
    assert raw not in str(dict(client.session.items()))
    again = client.get("/account/").text
    assert raw not in again and raw[15:] not in again
    assert f"sk-ch-{key.prefix}…" in again and "laptop" in again
    assert "won't be shown again" not in again


def test_a_key_that_never_expires_and_a_bad_name(client, user):
    post(client, "/account/keys/", {"name": "forever", "expires": "never"})
    assert ApiKey.objects.get(user=user).expires_at is None
    response = post(client, "/account/keys/", {"name": "   ", "expires": "never"})
    assert response.status_code == 400 and not KEY.search(response.text)
    assert 'role="alert"' in response.text
    response = post(client, "/account/keys/", {"name": "x", "expires": "12"})
    assert response.status_code == 400
    assert ApiKey.objects.filter(user=user).count() == 1


def test_the_list_shows_each_keys_state(client, user):
    active, _ = do_create_api_key(user=user, name="in use")
    expired, _ = do_create_api_key(user=user, name="old one",
                                   expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = do_create_api_key(user=user, name="gone")
    post(client, f"/account/keys/{revoked.pk}/revoke/")
    html = client.get("/account/").text
    rows = dict(re.findall(r'<tr class="key-row" data-state="(\w+)">\s*<td>([^<]+)</td>', html))
    assert rows == {"active": "in use", "expired": "old one", "revoked": "gone"}
    # Only the active key has a Revoke button.
    assert html.count(">Revoke</button>") == 1


def test_revoking_a_key_stops_it_at_once(client, user):
    key, raw = do_create_api_key(user=user, name="ci")
    response = post(client, f"/account/keys/{key.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == "/account/"
    with pytest.raises(ApiKeyRefused):
        authenticate_api_key(raw=raw, address=None)
    assert client.get(f"/account/keys/{key.pk}/revoke/").status_code == 405


def test_another_users_key_cannot_be_revoked_or_seen(client):
    other = make_user()
    theirs, raw = do_create_api_key(user=other, name="Bob's secret project")
    response = post(client, f"/account/keys/{theirs.pk}/revoke/")
    missing = post(client, "/account/keys/999999999/revoke/")
    assert response.status_code == missing.status_code == 404
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is None
    assert authenticate_api_key(raw=raw, address=None).user == other
    html = client.get("/account/").text
    assert "Bob's secret project" not in html and theirs.prefix not in html


def test_the_chat_list_setting(client, user):
    html = client.get("/account/").text
    assert 'name="show_api_conversations" id="show_api_conversations">' in html  # unticked
    post(client, "/account/preferences/", {"show_api_conversations": "on"})
    user.refresh_from_db()
    assert user.show_api_conversations
    assert 'id="show_api_conversations" checked>' in client.get("/account/").text
    response = post(client, "/account/preferences/")  # unticked: not sent at all
    assert response.status_code == 302
    user.refresh_from_db()
    assert not user.show_api_conversations
