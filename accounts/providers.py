"""The identity providers a person can sign in with, as the login page shows them: the one from
the environment (OIDC_*) and any an admin added as a Social application.

The login page's buttons post to allauth's provider login URL, which answers with a redirect to
the provider; a browser applies the page's CSP form-action to that redirect too, so the page
must allow each provider's origin (`form_action_policy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from allauth.socialaccount.adapter import get_adapter
from django.conf import settings
from django.http import HttpRequest


@dataclass(frozen=True)
class SignInButton:
    name: str
    login_url: str
    # Where the browser is sent to sign in ("https://login.example.com"), or "" if unknown.
    origin: str


def sign_in_buttons(request: HttpRequest) -> list[SignInButton]:
    """One button per configured provider app, in allauth's order. Reads the database (the
    admin's apps); no network."""
    buttons = []
    for provider in get_adapter(request).list_providers(request):
        if provider.app is not None and provider.app.settings.get("hidden"):
            continue
        buttons.append(SignInButton(name=provider.name, login_url=provider.get_login_url(request),
                                    origin=_authorize_origin(provider)))
    return buttons


def _authorize_origin(provider) -> str:
    # OpenID Connect: the issuer's origin (the authorization endpoint is on it at Entra ID, Okta,
    # Google and Keycloak). Learning it for sure would mean fetching the discovery document on
    # every login page. Other OAuth providers (GitHub) name their endpoint in their adapter class.
    url = provider.app.settings.get("server_url") if provider.app is not None else None
    if not url:
        adapter_class = getattr(provider, "oauth2_adapter_class", None)
        url = getattr(adapter_class, "authorize_url", None)
    if not isinstance(url, str):
        return ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else ""


def form_action_policy(buttons: list[SignInButton]) -> dict:
    """The site's CSP with form-action widened to the providers' origins."""
    policy = dict(settings.SECURE_CSP)
    origins = sorted({b.origin for b in buttons if b.origin})
    policy["form-action"] = [*policy.get("form-action", []), *origins]
    return policy
