from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Tell the person starting the server how to log in the first time."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, **options):
        host = options["url"].rstrip("/")
        if not get_user_model().objects.exists() and settings.OIDC_SERVER_URL:
            self.stdout.write(
                f"\nNo accounts yet. People sign in with {settings.OIDC_NAME} at {host}/: their "
                "accounts are made at their first login.\nMake the first admin with "
                "`.venv/bin/python manage.py createsuperuser`"
                + (", or sign in through SSO and promote that account (README: Company "
                   "sign-in).\n" if settings.SSO_ONLY else " or SSO_ADMIN_GROUPS.\n"))
        elif not get_user_model().objects.exists():
            self.stdout.write(
                "\nNo accounts yet. Create the first (an admin) in another terminal:\n"
                "    .venv/bin/python manage.py createsuperuser\n"
                f"then open {host}/ and log in. Admins add more people at {host}/admin/.\n"
            )
        else:
            self.stdout.write(f"\nOpen {host}/ and log in.\n")
        self.stdout.write(
            f"Model server: {settings.LLM_BASE_URL} (model {settings.LLM_MODEL}); "
            "set LLM_BASE_URL, LLM_MODEL and LLM_API_KEY to change it.\n"
        )
