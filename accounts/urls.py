"""Signing in and out: our login page, and allauth's provider URLs (/accounts/oidc/<id>/login/
and its callback, /accounts/github/login/...). Only these parts of allauth are served: its own
login, sign-up, password and email pages are not, so the login page here is the only way in.
And the person's own page, /account/ (their API keys)."""

from allauth.account import views as account_views
from allauth.socialaccount import views as socialaccount_views
from allauth.urls import build_provider_urlpatterns
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.views import (LoginView, account, account_create_key, account_preferences,
                            account_revoke_key)

allauth_urlpatterns = [
    # allauth's pages and emails link to its login page by this name: ours.
    path("login/", RedirectView.as_view(pattern_name="login", query_string=True),
         name="account_login"),
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    path("3rdparty/login/cancelled/", socialaccount_views.login_cancelled,
         name="socialaccount_login_cancelled"),
    path("3rdparty/login/error/", socialaccount_views.login_error,
         name="socialaccount_login_error"),
    *build_provider_urlpatterns(),
]

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include(allauth_urlpatterns)),
    # The person's own page (API keys, the chat list's setting); not allauth's "accounts/".
    path("account/", account, name="account"),
    path("account/keys/", account_create_key, name="account_create_key"),
    path("account/keys/<int:key_id>/revoke/", account_revoke_key, name="account_revoke_key"),
    path("account/preferences/", account_preferences, name="account_preferences"),
]
