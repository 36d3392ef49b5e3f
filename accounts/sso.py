"""What a company sign-in does to an account, at every login through an identity provider.

The provider is the source of truth for who may come in and which groups they are in; the admin
is the source of truth for everything else. So a login:

- is refused when SSO_ALLOWED_GROUPS is set and the provider puts the person in none of them,
  and when an admin deactivated the account by hand. Refusing an existing account deactivates it
  (`do_refuse_sso_login`), which ends its sessions, closes its open sockets and stops its turns
  through conversations/account_changes.py, the same path as an admin's deactivation;
- makes the Django groups match the provider's groups claim (SSO_GROUPS_CLAIM), creating missing
  groups, and removes only groups SSO itself added (`User.sso_groups`), so that groups an admin
  gave by hand stay;
- makes members of SSO_ADMIN_GROUPS staff, and takes staff away again only where SSO gave it.
  SSO never makes a superuser: superusers come only from the command line.

Called by accounts/adapters.py, inside allauth's login flow, before the session is made.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

logger = logging.getLogger(__name__)

# Bounds on what one provider response can make us write: a person in thousands of groups (or a
# provider sending garbage) must not create thousands of rows at every login. Entra ID itself
# stops listing groups at 200 in a token (its "overage" claim instead).
MAX_GROUPS = 200
MAX_GROUP_NAME = Group._meta.get_field("name").max_length

Refusal = Literal["deactivated", "not_allowed", "not_connectable"]


def identity_claims(extra_data: Mapping) -> dict:
    """The claims of one OpenID Connect login: allauth keeps the ID token's and the userinfo
    endpoint's apart; userinfo wins where both say something (it is the fresher of the two).
    Other providers' data (GitHub's profile) is returned as it is."""
    id_token, userinfo = extra_data.get("id_token"), extra_data.get("userinfo")
    if isinstance(id_token, Mapping) or isinstance(userinfo, Mapping):
        return {**(id_token if isinstance(id_token, Mapping) else {}),
                **(userinfo if isinstance(userinfo, Mapping) else {})}
    return dict(extra_data)


def claimed_groups(*, claims: Mapping, claim: str | None = None) -> list[str]:
    """The group names in the groups claim, bounded: a list of strings, or one string for one
    group; names stripped, empty and over-long ones (and anything not a string) left out with a
    log line, at most MAX_GROUPS, in the provider's order without repeats."""
    claim = claim or settings.SSO_GROUPS_CLAIM
    raw = claims.get(claim)
    if raw is None:
        return []
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else None
    if values is None:
        logger.warning("SSO groups claim %r is neither a list nor a string; ignored", claim)
        return []
    names: list[str] = []
    skipped = 0
    for value in values:
        name = value.strip() if isinstance(value, str) else ""
        if not name or len(name) > MAX_GROUP_NAME:
            skipped += 1
        elif name not in names:
            names.append(name)
    if skipped:
        logger.warning("SSO groups claim %r: %d entries ignored (not a name of 1 to %d "
                       "characters)", claim, skipped, MAX_GROUP_NAME)
    if len(names) > MAX_GROUPS:
        logger.warning("SSO groups claim %r names %d groups; only the first %d are used",
                       claim, len(names), MAX_GROUPS)
        names = names[:MAX_GROUPS]
    return names


def login_refusal(*, user, groups: Sequence[str]) -> Refusal | None:
    """Why this login must be refused, or None to let it in. `user` is the existing account,
    or None at a first login."""
    if user is not None and not user.is_active and not user.sso_deactivated:
        return "deactivated"  # by an admin: only an admin lets them back in
    allowed = settings.SSO_ALLOWED_GROUPS
    if allowed and not set(allowed) & set(groups):
        return "not_allowed"
    return None


def do_refuse_sso_login(*, user) -> None:
    """Deactivate an account whose provider no longer lets its person in, so that their other
    sessions and open sockets end now rather than whenever they next sign in. Saving the user
    is what tells account_changes; an account already inactive is left alone."""
    if user.is_active:
        user.is_active = False
        user.sso_deactivated = True
        user.save(update_fields=["is_active", "sso_deactivated"])
        logger.info("SSO refused user %s: deactivated", user.pk)


def do_sync_sso_account(*, user, groups: Sequence[str]) -> None:
    """Make the account match what the provider said at this login: its groups, staff status,
    and (if SSO deactivated it) active again. `user` is updated in place, since allauth goes on
    to sign in that same object. The row is locked, so two logins of one person at once cannot
    interleave their changes."""
    user_model = get_user_model()
    wanted = set(groups)
    in_admin_group = bool(wanted & set(settings.SSO_ADMIN_GROUPS))
    with transaction.atomic():
        fields = ("is_active", "is_staff", "sso_staff", "sso_deactivated")
        locked = user_model.objects.select_for_update().only(*fields).get(pk=user.pk)
        for field in fields:
            setattr(user, field, getattr(locked, field))
        have = set(user.groups.values_list("name", flat=True))
        granted = set(user.sso_groups.values_list("name", flat=True))

        # A group the admin took away by hand is no longer SSO's either; if the provider still
        # sends it, it is added back below, since the provider decides the SSO groups.
        granted &= have
        add = [_group(name) for name in sorted(wanted - have)]
        remove = list(Group.objects.filter(name__in=granted - wanted))
        user.groups.add(*add)
        user.groups.remove(*remove)
        user.sso_groups.set([*Group.objects.filter(name__in=granted & wanted), *add])

        changed = []
        if in_admin_group and not user.is_staff:
            user.is_staff = user.sso_staff = True
            changed += ["is_staff", "sso_staff"]
        elif not in_admin_group and user.sso_staff:
            user.is_staff = user.sso_staff = False
            changed += ["is_staff", "sso_staff"]
        if user.sso_deactivated:
            user.is_active, user.sso_deactivated = True, False
            changed += ["is_active", "sso_deactivated"]
        if changed:
            user.save(update_fields=changed)
    if add or remove or changed:
        logger.info("SSO login of user %s: groups +%s -%s; %s", user.pk,
                    [g.name for g in add], [g.name for g in remove], changed or "no other change")


def _group(name: str) -> Group:
    # get_or_create survives another login creating the same group at the same moment: its
    # insert runs in a savepoint and falls back to reading the row the other one made.
    return Group.objects.get_or_create(name=name)[0]


def subject_username(*, provider: str, uid: str) -> str:
    """A username no other person can have: derived from the provider and the subject, for
    when the one made from the person's name or email was taken in the meantime."""
    return "sso-" + hashlib.sha256(f"{provider}\0{uid}".encode()).hexdigest()[:16]
