"""`manage.py create_api_key USERNAME [--name NAME] [--expires-days N]`: a personal API key made
on the server, for a person who cannot reach the account page (or a deployment script). Only the
key is printed, on one line, so that `KEY=$(manage.py create_api_key alice)` works; it is shown
this once and cannot be had again."""

from __future__ import annotations

from argparse import ArgumentTypeError
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.api_keys import ApiKeyInvalid, do_create_api_key


def _positive(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if days < 1:
        raise ArgumentTypeError("must be at least 1 (leave it out for a key that never expires)")
    return days


class Command(BaseCommand):
    help = "Make a personal API key for a user and print it (once: it is not stored)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="Made with manage.py",
                            help="what the key is for, shown on the person's account page")
        parser.add_argument("--expires-days", type=_positive, default=None, metavar="N",
                            help="the key stops working N days from now (default: never)")

    def handle(self, *args, username: str, name: str, expires_days: int | None, **options):
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            raise CommandError(f"No user is called {username!r}.") from None
        if not user.is_active:
            raise CommandError(f"The user {username!r} is deactivated: activate the account "
                               "first (admin, Users).")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            _, raw = do_create_api_key(user=user, name=name, expires_at=expires_at)
        except ApiKeyInvalid as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(raw)
