"""The rename endpoint takes JSON only, and says so: a form post (multipart or urlencoded) was a
500 (issue 8: CSRF's check read the form, and the view then could not read the body)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.factories import make_conversation, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict():
    """A logged-in client that must send the CSRF token, as a browser must."""
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.user = make_user()
    client.force_login(client.user)
    client.get("/")  # sets the CSRF cookie, as the page does
    client.token = client.cookies["csrftoken"].value
    return client


@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=BoUnDaRyStRiNg",
    "application/x-www-form-urlencoded",
    "text/plain",
])
def test_a_rename_that_is_not_json_is_refused_with_a_clear_error(strict, content_type):
    conversation = make_conversation(owner=strict.user, title="Old")
    url = f"/api/conversations/{conversation.pk}/rename/"
    data = {"title": "New", "csrfmiddlewaretoken": strict.token}
    if content_type.startswith("multipart/"):
        response = strict.post(url, data)  # the test client's default: a multipart form
    elif content_type.startswith("application/x-www-form-urlencoded"):
        response = strict.post(url, "title=New&csrfmiddlewaretoken=" + strict.token,
                                content_type=content_type)
    else:
        response = strict.post(url, json.dumps({"title": "New"}), content_type=content_type,
                                headers={"X-CSRFToken": strict.token})
    assert response.status_code == 415
    assert response.json() == {"error": "Send the new title as JSON (Content-Type: "
                                        "application/json)."}
    conversation.refresh_from_db()
    assert conversation.title == "Old"


def test_a_json_rename_with_a_charset_still_works(strict):
    conversation = make_conversation(owner=strict.user, title="Old")
    response = strict.post(f"/api/conversations/{conversation.pk}/rename/",
                            json.dumps({"title": "New"}),
                            content_type="application/json; charset=utf-8",
                            headers={"X-CSRFToken": strict.token})
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "New"
