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


def test_api_keys_are_listed_by_their_public_part_and_revoked_by_an_action(admin_client):
    from accounts.api_keys import ApiKeyRefused, authenticate_api_key, do_create_api_key
    from accounts.models import ApiKey
    from tests.factories import make_user

    key, raw = do_create_api_key(user=make_user(username="ada"), name="ci deploy")
    listing = admin_client.get("/admin/accounts/apikey/")
    assert listing.status_code == 200
    assert key.shown in listing.text and "ci deploy" in listing.text
    assert raw not in listing.text and key.key_hash not in listing.text
    page = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/")
    assert raw not in page.text and key.key_hash not in page.text
    assert admin_client.get("/admin/accounts/apikey/add/").status_code == 403
    done = admin_client.post("/admin/accounts/apikey/", {
        "action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert "Revoked 1 API key" in done.text
    assert ApiKey.objects.get().revoked_at is not None
    with pytest.raises(ApiKeyRefused):
        authenticate_api_key(raw=raw, address=None)
