import sys

from django.core.management.base import BaseCommand, CommandError

from agents.mcp_import import ConfigError, do_import_mcp_servers, load_json, parse_config


class Command(BaseCommand):
    help = (
        "Create or update MCP servers from a Claude Desktop, Cursor, Claude Code "
        "({\"mcpServers\": ...}) or VS Code ({\"servers\": ...}) JSON file, matched by name. "
        "Runs as a superuser: whoever has this shell can run programs here anyway."
    )
    # call_command(..., stdin=...) in tests, as loaddata takes it.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("file", help="The JSON file, or - for standard input.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Report what would change; save nothing.")

    def handle(self, *args, **options):
        path = options["file"]
        try:
            data = load_json(read_source(path, stdin=options.get("stdin") or sys.stdin), source="standard input" if path == "-" else path)
            definitions = parse_config(data)
            report = do_import_mcp_servers(definitions=definitions, user_is_superuser=True,
                                           dry_run=options["dry_run"])
        except ConfigError as error:
            raise CommandError(f"{error.message}. Nothing was imported.") from None
        for line in report.text_lines():
            self.stdout.write(line)


def read_source(path: str, *, stdin) -> str:
    """The text of the file at `path` ("-": `stdin`). Raises CommandError naming the file,
    never its content: it may hold tokens (apply_config reads its files with this too)."""
    try:
        if path == "-":
            return stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise CommandError(f"Cannot read {path}: {error.strerror or error}.") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text.") from None
