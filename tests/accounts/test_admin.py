"""The admin's identity providers (allauth's social applications): the client secret is
write-only."""

import pytest
from allauth.socialaccount.models import SocialApp

pytestmark = pytest.mark.django_db


@pytest.fixture
def app():
    return SocialApp.objects.create(provider="openid_connect", provider_id="okta", name="Okta",
                                    client_id="chat-client", secret="s3cret-never-shown",
                                    settings={"server_url": "https://acme.okta.com"})


def form_data(app, **changes):
    return {"provider": "openid_connect", "provider_id": app.provider_id, "name": app.name,
            "client_id": app.client_id, "secret": "", "key": "",
            "settings": '{"server_url": "https://acme.okta.com"}', **changes}


def test_the_secret_is_never_shown_back(admin_client, app):
    page = admin_client.get(f"/admin/socialaccount/socialapp/{app.pk}/change/")
    assert page.status_code == 200
    assert b"s3cret-never-shown" not in page.content
    assert b'type="password"' in page.content


def test_an_empty_box_keeps_the_secret_and_a_new_one_replaces_it(admin_client, app):
    url = f"/admin/socialaccount/socialapp/{app.pk}/change/"
    kept = admin_client.post(url, form_data(app, name="Okta (renamed)"))
    assert kept.status_code == 302, kept.content.decode()[:2000]
    app.refresh_from_db()
    assert (app.name, app.secret) == ("Okta (renamed)", "s3cret-never-shown")

    assert admin_client.post(url, form_data(app, secret="rotated")).status_code == 302
    app.refresh_from_db()
    assert app.secret == "rotated"
