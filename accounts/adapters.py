"""allauth's hooks, translated to accounts/sso.py: these classes decide nothing themselves.

Named by ACCOUNT_ADAPTER and SOCIALACCOUNT_ADAPTER in chatsite/settings.py.
"""

from __future__ import annotations

import logging

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.utils import user_username
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount
from allauth.socialaccount.providers.base import AuthProcess
from django.db import IntegrityError, transaction
from django.shortcuts import render

from accounts import sso

logger = logging.getLogger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # Nobody makes a local account for themselves: local accounts come from the admin or
        # createsuperuser, SSO accounts from their first login (SocialAccountAdapter).
        return False

    def add_message(self, *args, **kwargs) -> None:
        # allauth's "Successfully signed in as ..." notes: no page of ours shows them, so they
        # would pile up in the session and surface later in the admin.
        return None


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin) -> bool:
        return True  # a person's first login through the provider makes their account

    def is_auto_signup_allowed(self, request, sociallogin) -> bool:
        return True  # no sign-up form: nothing the person could add is needed

    def pre_social_login(self, request, sociallogin) -> None:
        """Every login through a provider, once allauth has checked the provider's answer and
        found the account it belongs to (by provider and subject only), before anyone is signed
        in: refused with a page saying why, or the existing account brought up to date."""
        groups = _groups(sociallogin)
        user = sociallogin.user if sociallogin.is_existing else None
        refusal = sso.login_refusal(user=user, groups=groups)
        if sociallogin.state.get("process") == AuthProcess.CONNECT:
            # allauth's "connect this provider to the account I am signed in to": an identity
            # is its own account here, never added to another one.
            refusal = "not_connectable"
        if refusal:
            if user is not None and refusal == "not_allowed":
                sso.do_refuse_sso_login(user=user)
            logger.info("SSO login refused (%s) for %s subject %s", refusal,
                        sociallogin.account.provider, sociallogin.account.uid)
            raise ImmediateHttpResponse(render(request, "accounts/sso_refused.html", {
                "refusal": refusal,
                "provider_name": sociallogin.provider.name,
                # Shown as text (autoescaped): the provider's values are not ours to trust.
                "identity": sociallogin.user.email or sociallogin.user.get_full_name(),
            }, status=403))
        if user is not None:
            sso.do_sync_sso_account(user=user, groups=groups)

    def save_user(self, request, sociallogin, form=None):
        """A first login's new account, then its groups. Many people may log in for the first
        time at once: a username taken between allauth's check and our insert is replaced by
        one made from the subject, and the same person's second first login (two tabs) signs
        in to the account the first one made."""
        for attempt in range(2):
            try:
                with transaction.atomic():
                    user = super().save_user(request, sociallogin, form)
                break
            except IntegrityError:
                account = SocialAccount.objects.filter(
                    provider=sociallogin.account.provider, uid=sociallogin.account.uid,
                ).select_related("user").first()
                if account is not None:
                    sociallogin.account, sociallogin.user = account, account.user
                    user = account.user
                    break
                if attempt:
                    raise
                logger.info("SSO first login: username %r was taken meanwhile; using one made "
                            "from the subject", sociallogin.user.username)
                sociallogin.user.pk = None
                user_username(sociallogin.user, sso.subject_username(
                    provider=sociallogin.account.provider, uid=sociallogin.account.uid))
        sso.do_sync_sso_account(user=user, groups=_groups(sociallogin))
        return user


def _groups(sociallogin) -> list[str]:
    return sso.claimed_groups(claims=sso.identity_claims(sociallogin.account.extra_data))
