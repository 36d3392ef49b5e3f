"""Company sign-in against a real OpenID Connect provider (tests/accounts/idp.py): accounts are
made at the first login and keyed on the subject; groups and staff follow the provider at every
login; SSO_ALLOWED_GROUPS refuses outsiders; a refused account is deactivated at once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client

from accounts import sso
from tests.accounts.idp import PROVIDER_ID, ROOT, sso_login
from tests.conversations.processes import (
    free_port,
    migrated_database,
    start_daphne,
    wait_listening,
)
from tests.factories import make_user

pytestmark = pytest.mark.django_db

User = get_user_model()


def signed_in_user(client):
    response = client.get("/")
    assert response.status_code == 200, response
    return User.objects.get(pk=response.wsgi_request.user.pk)


def signed_out(client) -> bool:
    response = client.get("/")
    return response.status_code == 302 and response["Location"].startswith("/login/")


def text(response) -> str:
    """The page's HTML with its whitespace runs made single spaces."""
    return " ".join(response.content.decode().split())


def group_names(user) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


def test_the_first_login_makes_the_account_keyed_on_the_subject(idp, person):
    key = person(sub="0f1e-alice", email="alice@acme.example", name="Alice Liddell",
                 groups=["engineering", "chat-users"])
    client = Client()
    response = sso_login(client, key)
    assert response.status_code == 302 and response["Location"] == "/"
    user = signed_in_user(client)
    assert (user.email, user.first_name, user.last_name) == (
        "alice@acme.example", "Alice", "Liddell")
    assert not user.has_usable_password()
    assert not user.is_staff and not user.is_superuser
    assert group_names(user) == {"engineering", "chat-users"}
    account = SocialAccount.objects.get(user=user)
    assert (account.provider, account.uid) == (PROVIDER_ID, "0f1e-alice")

    # The next login is the same account, found by the subject alone.
    sso_login(Client(), key)
    assert User.objects.count() == 1


def test_the_login_uses_pkce(idp, person):
    key = person()
    start = Client().post(f"/accounts/oidc/{PROVIDER_ID}/login/?auth_params="
                          + quote(f"login_hint={key}"))
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43


def test_groups_follow_the_provider_at_every_login_and_hand_given_groups_stay(idp, person):
    key = person(groups=["engineering", "chat-users"])
    client = Client()
    sso_login(client, key)
    user = signed_in_user(client)
    by_hand = Group.objects.create(name="beta-testers")
    user.groups.add(by_hand)  # as an admin does in the user's change form

    idp.add_person(key, sub=f"sub-{key}", groups=["chat-users", "sales"])
    sso_login(Client(), key)
    assert group_names(user) == {"chat-users", "sales", "beta-testers"}
    assert Group.objects.filter(name="engineering").exists()  # left for others, not deleted

    idp.add_person(key, sub=f"sub-{key}", groups=[])
    sso_login(Client(), key)
    assert group_names(user) == {"beta-testers"}


def test_a_group_the_admin_gave_before_the_provider_sent_it_stays_when_the_provider_stops(
        idp, person):
    key = person(groups=[])
    client = Client()
    sso_login(client, key)
    user = signed_in_user(client)
    user.groups.add(Group.objects.create(name="sales"))
    idp.add_person(key, sub=f"sub-{key}", groups=["sales"])
    sso_login(Client(), key)
    idp.add_person(key, sub=f"sub-{key}", groups=[])
    sso_login(Client(), key)
    assert group_names(user) == {"sales"}


def test_admin_group_members_are_staff_and_never_superusers(idp, person, settings):
    settings.SSO_ADMIN_GROUPS = ["chat-admins"]
    key = person(groups=["chat-admins"], is_superuser=True, is_staff=True)
    client = Client()
    sso_login(client, key)
    user = signed_in_user(client)
    assert user.is_staff and not user.is_superuser
    assert client.get("/admin/").status_code == 200

    idp.add_person(key, sub=f"sub-{key}", groups=["engineering"])
    sso_login(Client(), key)
    user.refresh_from_db()
    assert not user.is_staff and not user.is_superuser


def test_staff_given_by_hand_is_not_taken_away_by_sso(idp, person, settings):
    settings.SSO_ADMIN_GROUPS = ["chat-admins"]
    key = person(groups=[])
    client = Client()
    sso_login(client, key)
    user = signed_in_user(client)
    User.objects.filter(pk=user.pk).update(is_staff=True)
    idp.add_person(key, sub=f"sub-{key}", groups=["chat-admins"])
    sso_login(Client(), key)
    idp.add_person(key, sub=f"sub-{key}", groups=[])
    sso_login(Client(), key)
    user.refresh_from_db()
    assert user.is_staff


def test_an_outsider_is_refused_with_a_page_saying_why_and_gets_no_account(
        idp, person, settings):
    settings.SSO_ALLOWED_GROUPS = ["chat-users", "chat-admins"]
    key = person(email="mallory@acme.example", groups=["sales"])
    client = Client()
    response = sso_login(client, key)
    assert response.status_code == 403
    page = text(response)
    assert "not in a group that may use this site" in page
    assert "mallory@acme.example" in page
    assert not User.objects.exists()
    assert signed_out(client)

    member = person(groups=["chat-admins"])
    assert sso_login(Client(), member).status_code == 302


def test_a_login_the_provider_s_groups_no_longer_allow_deactivates_the_account(
        idp, person, settings):
    settings.SSO_ALLOWED_GROUPS = ["chat-users"]
    key = person(groups=["chat-users"])
    first_tab = Client()
    sso_login(first_tab, key)
    user = signed_in_user(first_tab)

    idp.add_person(key, sub=f"sub-{key}", groups=["alumni"])
    response = sso_login(Client(), key)
    assert response.status_code == 403
    user.refresh_from_db()
    assert not user.is_active and user.sso_deactivated
    assert signed_out(first_tab)  # the session made before is over too

    # Back in the group: the provider lets them in again, to the same account.
    idp.add_person(key, sub=f"sub-{key}", groups=["chat-users"])
    again = Client()
    assert sso_login(again, key).status_code == 302
    assert signed_in_user(again).pk == user.pk
    user.refresh_from_db()
    assert user.is_active and not user.sso_deactivated


def test_an_account_an_admin_deactivated_is_refused_whatever_the_provider_says(
        idp, person, settings, admin_client):
    settings.SSO_ALLOWED_GROUPS = ["chat-users"]
    key = person(groups=["chat-users"])
    sso_login(Client(), key)
    idp.add_person(key, sub=f"sub-{key}", groups=["alumni"])
    sso_login(Client(), key)  # refused, and so deactivated by SSO...
    user = User.objects.get(socialaccount__isnull=False)
    assert user.sso_deactivated
    # ...then deactivated by an admin, in the user's change form (saved unchanged but for
    # "active", which stays off): the admin's decision, which the provider cannot undo.
    form = admin_client.get(f"/admin/accounts/user/{user.pk}/change/").context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(is_active="on", date_joined_0=user.date_joined.strftime("%Y-%m-%d"),
                date_joined_1=user.date_joined.strftime("%H:%M:%S"))
    data.pop("last_login", None)
    data.pop("date_joined", None)
    assert admin_client.post(f"/admin/accounts/user/{user.pk}/change/", data).status_code == 302
    del data["is_active"]
    response = admin_client.post(f"/admin/accounts/user/{user.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert not user.is_active and not user.sso_deactivated

    idp.add_person(key, sub=f"sub-{key}", groups=["chat-users"])
    response = sso_login(Client(), key)
    assert response.status_code == 403
    assert "has been deactivated" in text(response)
    user.refresh_from_db()
    assert not user.is_active


def test_no_account_is_ever_joined_through_an_email_address(idp, person):
    local = make_user(username="alice", email="alice@acme.example")
    local.is_staff = local.is_superuser = True
    local.save()
    key = person(email="alice@acme.example", email_verified=True, preferred_username="alice")
    client = Client()
    sso_login(client, key)
    user = signed_in_user(client)
    assert user.pk != local.pk
    assert not user.is_staff and not user.is_superuser
    assert user.username != "alice"
    assert not SocialAccount.objects.filter(user=local).exists()


def test_an_identity_cannot_be_connected_to_the_account_signed_in(idp, person):
    local = make_user(username="carol")
    client = Client()
    client.force_login(local)
    key = person()
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/?process=connect&auth_params="
                        + quote(f"login_hint={key}"))
    authorize = httpx.get(start["Location"], follow_redirects=False)
    callback = urlsplit(authorize.headers["location"])
    response = client.get(f"{callback.path}?{callback.query}")
    assert response.status_code == 403
    assert "cannot be added to another account" in text(response)
    assert not SocialAccount.objects.exists()


def test_the_provider_s_picture_is_never_fetched_and_its_name_is_shown_as_text(
        idp, person, settings, admin_client):
    evil = '<img src=x onerror=alert(1)>'
    settings.SSO_ALLOWED_GROUPS = ["chat-users"]
    key = person(name=evil, email="", groups=[], picture=f"{idp.url}/_picture.png")
    refused = sso_login(Client(), key)
    assert refused.status_code == 403
    assert evil not in refused.content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in refused.content.decode()

    settings.SSO_ALLOWED_GROUPS = []
    client = Client()
    sso_login(client, key)
    client.get("/")
    listing = admin_client.get("/admin/accounts/user/").content.decode()
    assert "onerror=alert(1)&gt;" in listing and evil not in listing
    assert idp.picture_fetches() == 0


@pytest.mark.django_db(transaction=True)
def test_twenty_first_logins_at_once_make_twenty_accounts_and_promote_nobody(
        oidc_server, tmp_path):
    """Against Daphne in its own process, configured by the environment as in production
    (OIDC_*): twenty people, all with the same name (so the usernames allauth picks for them
    collide), complete their first login at the same moment."""
    people = [f"crowd{n}-{tmp_path.name}" for n in range(20)]
    for key in people:
        oidc_server.add_person(key, name="Sam Smith", preferred_username="sam",
                               groups=["chat-users"])
    # And one more person in two browsers at once: both get the one account.
    keys = [*people, people[0]]
    with site_process(oidc_server, tmp_path, SSO_ADMIN_GROUPS="chat-admins") as site:
        browsers = [httpx.Client(base_url=site.url, timeout=30) for _ in keys]
        callbacks = [start_login(browser, key) for browser, key in zip(browsers, keys)]
        barrier = threading.Barrier(len(keys))

        def finish(browser: httpx.Client, callback: str) -> int:
            barrier.wait(timeout=30)
            return browser.get(callback).status_code

        with ThreadPoolExecutor(len(keys)) as pool:
            codes = list(pool.map(finish, browsers, callbacks))
        assert codes == [302] * len(keys)
        assert all(b.get("/").status_code == 200 for b in browsers)  # each one signed in
        users = site.query(
            "from django.contrib.auth import get_user_model\n"
            "print(json.dumps([{'username': u.username, 'staff': u.is_staff,\n"
            "    'superuser': u.is_superuser, 'groups': [g.name for g in u.groups.all()]}\n"
            "    for u in get_user_model().objects.all()]))")
    assert len(users) == len(people)
    assert len({u["username"] for u in users}) == len(people)
    assert not any(u["staff"] or u["superuser"] for u in users)
    assert all(u["groups"] == ["chat-users"] for u in users)


@dataclass
class Site:
    url: str
    environ: dict

    def query(self, code: str):
        """What `code` prints as JSON, run by manage.py shell on the site's database."""
        done = subprocess.run([sys.executable, "manage.py", "shell", "-c", "import json\n" + code],
                              cwd=ROOT, env=self.environ, capture_output=True, text=True,
                              check=True, timeout=120)
        return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def site_process(idp, tmp_path, **env):
    """The site in a Daphne process of its own, its SSO provider set by OIDC_*, on a database of
    its own (SQLite) or the tests' (PostgreSQL: this test's transaction=True lets the process
    see it, and flushes it afterwards)."""
    db = connections["default"].settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        database_url = f"sqlite:///{tmp_path}/db.sqlite3"
    else:
        database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    port = free_port()
    environ = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": database_url,
               "DJANGO_SETTINGS_MODULE": "chatsite.settings", "SECRET_KEY": settings.SECRET_KEY,
               "OIDC_SERVER_URL": idp.url, "OIDC_CLIENT_ID": "chatsite-tests",
               "OIDC_CLIENT_SECRET": "not-a-real-secret", "OIDC_NAME": "Acme SSO", **env}
    if database_url.startswith("sqlite"):
        migrated_database(tmp_path / "db.sqlite3")
    log = tmp_path / "daphne.log"
    proc = start_daphne(port, environ, log)
    try:
        wait_listening(port, proc)
        yield Site(url=f"http://127.0.0.1:{port}", environ=environ)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        print(log.read_text(errors="replace")[-5000:])


def start_login(browser: httpx.Client, key: str) -> str:
    """A browser's first two steps: the login page's button, then the provider; returns the
    callback URL the provider sent it back to, not yet followed."""
    page = browser.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    start = browser.post(f"/accounts/oidc/{PROVIDER_ID}/login/?auth_params="
                         + quote(f"login_hint={key}"), data={"csrfmiddlewaretoken": token})
    assert start.status_code == 302, start.text
    authorize = httpx.get(start.headers["location"])
    assert authorize.status_code == 302, authorize.text
    return authorize.headers["location"]


def test_userinfo_wins_over_the_id_token_and_both_are_read():
    claims = sso.identity_claims({"id_token": {"sub": "1", "groups": ["old"], "acr": "mfa"},
                                  "userinfo": {"sub": "1", "groups": ["new"]}})
    assert claims == {"sub": "1", "groups": ["new"], "acr": "mfa"}
    assert sso.identity_claims({"login": "octocat"}) == {"login": "octocat"}  # GitHub's


@pytest.mark.parametrize(("raw", "names"), [
    (None, []),
    ("engineering", ["engineering"]),
    ([" sales ", "sales", "", 7, {"name": "x"}, "x" * 151, "ops"], ["sales", "ops"]),
    ({"not": "a list"}, []),
    ([f"g{n}" for n in range(250)], [f"g{n}" for n in range(200)]),
])
def test_the_groups_claim_is_bounded(raw, names, settings):
    settings.SSO_GROUPS_CLAIM = "roles"
    assert sso.claimed_groups(claims={"roles": raw, "groups": ["ignored"]}) == names


def test_the_groups_claim_is_the_one_sso_groups_claim_names(idp, person, settings):
    settings.SSO_GROUPS_CLAIM = "roles"
    key = person(groups=["not-these"], roles=["chat-users"])
    client = Client()
    sso_login(client, key)
    assert group_names(signed_in_user(client)) == {"chat-users"}
