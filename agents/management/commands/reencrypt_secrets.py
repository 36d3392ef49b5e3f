from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from agents.fields import do_reencrypt_secrets


class Command(BaseCommand):
    help = (
        "Rewrite every encrypted secret in the database under the current key "
        "(FIELD_ENCRYPTION_KEY, else SECRET_KEY), so the old keys can leave the fallbacks."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Check that every value can be read and count them; write nothing.",
        )

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        try:
            done = do_reencrypt_secrets(dry_run=dry_run)
        except ImproperlyConfigured as error:
            raise CommandError(f"{error} Nothing was written.") from None
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        for item in done:
            self.stdout.write(f"{verb} {item.count} value(s) of {item.field}.")
        self.stdout.write(
            "Dry run: nothing was written." if dry_run else
            "Every value was rewritten under the current key, including any already under it: "
            "stored secrets no longer need FIELD_ENCRYPTION_KEY_FALLBACKS or SECRET_KEY_FALLBACKS."
        )
