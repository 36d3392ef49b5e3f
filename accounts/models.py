from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """Our own user model from the first day, so SSO fields (issuer subject, groups) can be added
    by migrations instead of a painful swap later."""

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
