"""The sign-in pages: the login page's provider buttons (and the CSP they need), and SSO_ONLY,
which leaves no password field and no password page anywhere."""

from __future__ import annotations

import re

import pytest
from allauth.socialaccount.models import SocialApp
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from tests.accounts.idp import PROVIDER_ID, sso_login
from tests.factories import make_user

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "correct horse battery staple"


def form_action(response) -> str:
    return re.search(r"form-action ([^;]*)", response["Content-Security-Policy"]).group(1)


def test_the_login_page_has_a_button_per_provider_and_lets_the_browser_go_to_them(idp):
    SocialApp.objects.create(provider="openid_connect", provider_id="okta", name="Okta",
                             client_id="x", settings={"server_url": "https://acme.okta.com"})
    response = Client().get("/login/?next=/c/123/")
    page = response.content.decode()
    forms = re.findall(r'<form method="post" action="([^"]+)" class="sso">.*?'
                       r'<button type="submit">([^<]+)</button>', page, re.S)
    assert sorted(forms) == [("/accounts/oidc/okta/login/", "Sign in with Okta"),
                             (f"/accounts/oidc/{PROVIDER_ID}/login/", "Sign in with Acme SSO")]
    assert page.count('name="csrfmiddlewaretoken"') == 3  # the two buttons and the password form
    assert 'name="next" value="/c/123/"' in page
    assert 'type="password"' in page  # local accounts still sign in beside SSO
    assert form_action(response).split() == ["'self'", idp.url, "https://acme.okta.com"]
    # Other pages keep the strict policy.
    assert form_action(Client().get("/accounts/oidc/sso/login/")) == "'self'"


def test_a_local_account_still_signs_in_beside_sso(idp):
    make_user(username="carol", password=PASSWORD)
    response = Client().post("/login/", {"username": "carol", "password": PASSWORD})
    assert response.status_code == 302 and "sessionid" in response.cookies


def test_the_next_page_survives_the_trip_to_the_provider(idp, person):
    client = Client()
    response = sso_login(client, person(), next_url="/admin/")
    assert response["Location"] == "/admin/"


def test_allauth_s_own_sign_up_and_password_pages_are_not_served(idp):
    client = Client()
    for path in ("/accounts/signup/", "/accounts/password/reset/", "/accounts/email/",
                 "/accounts/password/change/", "/accounts/3rdparty/signup/",
                 "/accounts/3rdparty/"):
        assert client.get(path).status_code == 404, path
    assert client.get("/accounts/login/")["Location"] == "/login/"


@pytest.fixture
def sso_only(idp, settings):
    settings.SSO_ONLY = True
    return idp


def test_sso_only_leaves_no_password_field_on_the_login_page(sso_only):
    make_user(username="carol", password=PASSWORD)
    client = Client()
    page = client.get("/login/").content.decode()
    assert "Sign in with Acme SSO" in page
    assert 'type="password"' not in page and 'name="username"' not in page
    answer = client.post("/login/", {"username": "carol", "password": PASSWORD})
    assert answer.status_code == 405 and "sessionid" not in answer.cookies


def test_sso_only_sends_the_admin_s_sign_in_to_the_login_page(sso_only):
    make_user(username="root", password=PASSWORD, is_staff=True, is_superuser=True)
    client = Client()
    assert client.get("/admin/login/?next=/admin/agents/")["Location"] == (
        "/login/?next=/admin/agents/")
    post = client.post("/admin/login/", {"username": "root", "password": PASSWORD})
    assert post.status_code == 302 and "sessionid" not in post.cookies
    assert client.get("/admin/")["Location"].startswith("/admin/login/")


def test_sso_only_leaves_no_password_in_the_admin(sso_only, person, settings):
    settings.SSO_ADMIN_GROUPS = ["chat-admins"]
    admin = Client()
    sso_login(admin, person(groups=["chat-admins"]))
    user = User.objects.get()
    User.objects.filter(pk=user.pk).update(is_superuser=True)  # as the README's shell line does
    assert admin.get("/admin/password_change/").status_code == 404
    assert admin.get(f"/admin/accounts/user/{user.pk}/password/").status_code == 404
    change = admin.get(f"/admin/accounts/user/{user.pk}/change/")
    assert change.status_code == 200
    assert "password" not in change.context["adminform"].form.fields
    assert "password" not in change.content.decode().lower()
    assert admin.get("/admin/accounts/user/add/").status_code == 403


def test_without_sso_only_the_admin_keeps_its_password_pages(idp, admin_client):
    assert admin_client.get("/admin/password_change/").status_code == 200
    assert Client().get("/admin/login/").status_code == 200


def test_sso_only_still_lets_createsuperuser_make_the_first_admin(sso_only, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", "--username", "root",
                 "--email", "root@acme.example")
    assert User.objects.get(username="root").is_superuser


def test_the_readme_s_shell_line_makes_an_sso_account_a_superuser(idp, person):
    sso_login(Client(), person(preferred_username="alice"))
    username = User.objects.get().username
    call_command("shell", "-c", "from accounts.models import User; "
                 f"User.objects.filter(username='{username}')"
                 ".update(is_staff=True, is_superuser=True)")
    user = User.objects.get()
    assert user.is_staff and user.is_superuser
