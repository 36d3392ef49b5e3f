"""Cookies no script needs are out of scripts' reach: the session and the CSRF token (the page
reads the token from its meta tag, and its rename still passes the CSRF check)."""

from __future__ import annotations

import json

import pytest

from tests.factories import make_conversation, make_user

pytestmark = pytest.mark.django_db


def test_session_and_csrf_cookies_are_http_only_and_the_page_still_posts(client):
    user = make_user()
    client.force_login(user)
    client.handler.enforce_csrf_checks = True
    page = client.get("/")
    assert page.status_code == 200
    assert page.cookies["csrftoken"]["httponly"] is True
    token = page.context["csrf_token"]
    assert f'<meta name="csrf-token" content="{token}">' in page.content.decode()
    conversation = make_conversation(owner=user)
    renamed = client.post(f"/api/conversations/{conversation.pk}/rename/", json.dumps({"title": "New"}),
                          content_type="application/json", HTTP_X_CSRFTOKEN=str(token))
    assert renamed.status_code == 200, renamed.content
