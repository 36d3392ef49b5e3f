"""Retention's entry point, for cron: conversations.retention.do_purge_conversations does the
work; this reads the age and says what was removed."""

from datetime import UTC, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.retention import do_purge_conversations


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class Command(BaseCommand):
    help = ("Remove conversations last active more than RETENTION_DAYS (or --older-than-days) "
            "ago, with their messages and tool calls; those under legal hold are kept.")

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=int, metavar="N",
                            help="Age in days after the last activity (default: RETENTION_DAYS).")
        parser.add_argument("--dry-run", action="store_true",
                            help="Count what would be removed; remove nothing.")

    def handle(self, *args, **options):
        days = options["older_than_days"]
        if days is None:
            days = settings.RETENTION_DAYS
            if not days:
                # RETENTION_DAYS=0 means keep forever: purging needs an age someone chose.
                raise CommandError("No retention age: set RETENTION_DAYS or pass "
                                   "--older-than-days N.")
        elif days < 1:
            raise CommandError("--older-than-days must be at least 1.")
        report = do_purge_conversations(older_than=timedelta(days=days),
                                        dry_run=options["dry_run"])
        cutoff = report.cutoff.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        self.stdout.write(
            f"{'Would remove' if options['dry_run'] else 'Removed'} "
            f"{_plural(report.conversations, 'conversation')} "
            f"({_plural(report.messages, 'message')}, {_plural(report.tool_calls, 'tool call')}) "
            f"last active before {cutoff}; kept {report.held} under legal hold.")
