"""Company sign-in in a real browser: the login page's button, the provider (oauth2-mock-server,
tests/accounts/idp.py), and back to the chat signed in, with the page's CSP letting the browser
go to the provider and nothing refused on the way."""

from __future__ import annotations

from allauth.socialaccount.models import SocialAccount, SocialApp
from playwright.sync_api import expect

from tests.browser.conftest import expect_connected, watch


def test_signing_in_through_the_provider_lands_on_the_chat(page, server_url, oidc_server, fake,
                                                           django_db_blocker):
    # Added as an admin adds one (Social applications), so the running server sees it at once.
    with django_db_blocker.unblock():
        app = SocialApp.objects.create(provider="openid_connect", provider_id="acme",
                                       name="Acme SSO", client_id="chatsite-browser",
                                       settings={"server_url": oidc_server.url})
    oidc_server.add_person("browser-dana", sub="dana-0001", email="dana@acme.example",
                           name="Dana Scully", groups=["chat-users"])
    oidc_server.set_default("browser-dana")
    try:
        watcher = watch(page)
        page.goto(server_url + "/login/")
        page.get_by_role("button", name="Sign in with Acme SSO").click()
        page.wait_for_url(server_url + "/")
        expect_connected(page)
        expect(page.get_by_role("textbox", name="Message")).to_be_visible()
        assert watcher.csp_violations() == [] and page.evaluate("window.__csp") == []
        assert watcher.errors == []
        assert any(url.startswith(oidc_server.url + "/authorize") for url in watcher.requests)
        with django_db_blocker.unblock():
            account = SocialAccount.objects.select_related("user").get(uid="dana-0001")
            assert account.provider == "acme"
            assert account.user.email == "dana@acme.example"
            assert list(account.user.groups.values_list("name", flat=True)) == ["chat-users"]
    finally:
        oidc_server.set_default(None)
        with django_db_blocker.unblock():
            app.delete()
