from django.contrib.auth.models import AbstractUser, Group
from django.db import models


class User(AbstractUser):
    """Our own user model from the first day, so SSO fields could be added by migrations instead
    of a painful swap later.

    An SSO person's identity is allauth's SocialAccount (provider and subject); the fields here
    record what SSO changed on the account, so that it can take back exactly that and leave what
    an admin did by hand (accounts/sso.py)."""

    # The subset of `groups` that SSO added because the provider's groups claim named them.
    # Only these are removed when the provider stops sending them; a group an admin gave by
    # hand is never in here, so it stays.
    sso_groups = models.ManyToManyField(Group, blank=True, related_name="sso_members",
                                        verbose_name="groups from SSO")
    # is_staff was turned on by SSO_ADMIN_GROUPS (and goes when the person leaves them);
    # staff status given by hand is not SSO's to take away.
    sso_staff = models.BooleanField("staff from SSO", default=False)
    # is_active was turned off because the provider's groups no longer let the person in
    # (SSO_ALLOWED_GROUPS); a later login they do let in turns it back on. An account an admin
    # deactivated by hand stays off whatever the provider says.
    sso_deactivated = models.BooleanField("deactivated by SSO", default=False)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
