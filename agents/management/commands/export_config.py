from django.core.management.base import BaseCommand, CommandError

from agents.config_export import export_config


class Command(BaseCommand):
    help = (
        "Write the model servers, models, agents and MCP servers as a TOML file for "
        "apply_config. No secret is written: keys and literal env or header values become "
        "placeholder variables, each with a comment saying to set it."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default="-",
                            help="Where to write it (default, or -: standard output).")

    def handle(self, *args, **options):
        text = export_config()
        path = options["file"]
        if path == "-":
            self.stdout.write(text, ending="")
            return
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as error:
            raise CommandError(f"Cannot write {path}: {error.strerror or error}.") from None
        self.stderr.write(f"Wrote {path}.")
