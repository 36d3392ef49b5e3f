import itertools

import pytest

_n = itertools.count(1)


@pytest.fixture
def idp(oidc_server, settings):
    """The mock provider as the site's one SSO provider (as OIDC_* would make it), with no group
    rules; tests set SSO_ADMIN_GROUPS, SSO_ALLOWED_GROUPS and SSO_ONLY as they need."""
    settings.SOCIALACCOUNT_PROVIDERS = oidc_server.app_settings()
    settings.SSO_GROUPS_CLAIM = "groups"
    settings.SSO_ADMIN_GROUPS = []
    settings.SSO_ALLOWED_GROUPS = []
    settings.SSO_ONLY = False
    return oidc_server


@pytest.fixture
def person(idp):
    """A new person at the provider: `person(groups=[...])` returns their login_hint key."""
    def make(**claims) -> str:
        key = f"person{next(_n)}"
        idp.add_person(key, **claims)
        return key
    return make
