import sys

from django.core.management.base import BaseCommand, CommandError

from agents.config_apply import do_apply_config
from agents.config_schema import parse_config_text
from agents.management.commands.import_mcp_servers import read_source
from agents.mcp_import import ConfigError


class Command(BaseCommand):
    help = (
        "Create or update model servers, models, agents and MCP servers from a TOML file "
        "(the format of export_config; see README, Configuration as code), or MCP servers "
        "from an {\"mcpServers\": ...} JSON file, matched by name. In one transaction: any "
        "problem and nothing is applied. Secrets come from the environment variables the file "
        "names. Runs as a superuser: whoever has this shell can run programs here anyway."
    )
    # call_command(..., stdin=...) in tests, as loaddata takes it.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument("file", help="The .toml (or .json) file, or - for TOML on standard "
                                         "input.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Report what would change; save nothing.")
        parser.add_argument("--prune", action="store_true",
                            help="Also remove the rows the file does not name, in each section "
                                 "the file has.")
        parser.add_argument("--list-tools", action="store_true",
                            help="List the tools of MCP servers an agent names single tools "
                                 "of and that have none stored yet (starts those servers).")

    def handle(self, *args, **options):
        path = options["file"]
        source = "standard input" if path == "-" else path
        text = read_source(path, stdin=options.get("stdin") or sys.stdin)
        try:
            config = parse_config_text(text, source=source)
            report = do_apply_config(config=config, prune=options["prune"],
                                     dry_run=options["dry_run"],
                                     list_tools=options["list_tools"])
        except ConfigError as error:
            if len(error.problems) == 1:
                raise CommandError(f"{error.problems[0]}. Nothing was applied.") from None
            listed = "\n".join(f"  - {p}" for p in error.problems)
            raise CommandError(f"{len(error.problems)} problems in {source}, nothing was "
                               f"applied:\n{listed}") from None
        for line in report.text_lines():
            self.stdout.write(line)
