from django.conf import settings
from django.contrib.auth.models import AbstractUser, Group
from django.db import models
from django.utils import timezone


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
    # Conversations made through the /v1 API (Conversation.Source.API) are left out of the
    # chat list unless the person asks for them: a script can make hundreds.
    show_api_conversations = models.BooleanField(
        "show API conversations in the chat list", default=False)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class ApiKey(models.Model):
    """A personal key for the /v1 API: `sk-ch-<prefix>_<secret>` (accounts/api_keys.py makes
    and checks them). Only the prefix and a hash of the whole key are stored; the key itself is
    shown once, when it is made."""

    # Not an audit record (the conversations a key made are): a key goes with its user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_keys")
    name = models.CharField(max_length=100)
    # The key's public part, shown in lists so a person can tell their keys apart; a presented
    # key is looked up by it (the unique index serves that lookup).
    prefix = models.CharField(max_length=8, unique=True)
    # sha256 hex of the whole key. A fast hash is right here, unlike for passwords: the secret
    # is 32 random bytes, so there is nothing for a slow hash to protect against guessing, and
    # every API request checks it.
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written at most once a minute per key (api_keys.authenticate_api_key), so it is "about
    # when", not an exact time.
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.shown})"

    @property
    def shown(self) -> str:
        """How the key is named in lists: its public part only."""
        return f"sk-ch-{self.prefix}…"

    @property
    def state(self) -> str:
        """"revoked", "expired" or "active" (the user's own state aside)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"
