"""What `make run` tells the person starting the server about signing in the first time."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def hint() -> str:
    out = StringIO()
    call_command("first_run_hint", "--url", "http://chat.test", stdout=out)
    return out.getvalue()


def test_without_sso_the_first_account_comes_from_createsuperuser(settings):
    settings.OIDC_SERVER_URL = ""
    text = hint()
    assert "manage.py createsuperuser" in text
    assert "SSO" not in text


def test_with_sso_people_sign_in_through_the_provider(settings):
    settings.OIDC_SERVER_URL, settings.OIDC_NAME, settings.SSO_ONLY = (
        "https://idp.test", "Acme SSO", False)
    text = hint()
    assert "sign in with Acme SSO at http://chat.test/" in text
    assert "SSO_ADMIN_GROUPS" in text


def test_sso_only_points_to_promoting_an_sso_account(settings, django_user_model):
    settings.OIDC_SERVER_URL, settings.SSO_ONLY = "https://idp.test", True
    assert "promote that account" in hint()
    django_user_model.objects.create_user("ann")
    assert hint().startswith("\nOpen http://chat.test/ and log in.")
