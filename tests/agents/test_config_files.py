"""Configuration as code: `manage.py apply_config` and `export_config` (agents.config_schema,
agents.config_apply, agents.config_export)."""

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command

from agents.env_refs import stored_mapping
from agents.models import Agent, LanguageModel, McpServer, McpTool, ModelServer
from agents.tool_catalog import do_store_listing
from fakemcp import stdio_command
from fakemcp.runner import ROOT
from tests.factories import definition, make_mcp_server

pytestmark = pytest.mark.django_db

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chatsite.toml"

SETUP = """
[model_servers.vllm]
kind = "openai"
base_url = "http://vllm.internal:8000/v1"
api_key_env = "VLLM_API_KEY"
max_concurrency = 8

[model_servers.claude]
kind = "anthropic"
base_url = "https://api.anthropic.com"

[[models]]
server = "vllm"
name = "openai/gpt-oss-120b"
context_window = 131072
input_price = 0.15
output_price = 0.6

[[models]]
name = "gpt-oss:20b"
max_output_tokens = 4096

[agents.helper]
name = "Helper"
server = "vllm"
model = "openai/gpt-oss-120b"
fallback_models = ["claude:claude-sonnet-4-5", "gpt-oss-20b"]
temperature = 0.2
is_default = true

[agents.ops]
name = "Ops"
model = "gpt-oss:20b"
allowed_groups = ["sso-ops"]
tools_mode = "chosen"
tool_servers = ["remote"]
max_tool_rounds = 3

[mcpServers.fetch]
command = "uvx"
args = ["mcp-server-fetch"]
env = { LOG_LEVEL = "${LOG_LEVEL:-info}" }

[mcpServers.remote]
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer ${GITHUB_TOKEN}" }
allowed_groups = ["sso-ops"]
call_timeout = 30
"""


@pytest.fixture(autouse=True)
def _environment(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-vllm-very-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_notwritten")


def apply(tmp_path, text, *args, name="chatsite.toml"):
    path = tmp_path / name
    path.write_text(text)
    out = io.StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue()


def export() -> str:
    out = io.StringIO()
    call_command("export_config", stdout=out)
    return out.getvalue()


def stamps():
    return {model.__name__: sorted(model.objects.values_list("pk", "updated_at"))
            for model in (ModelServer, LanguageModel, Agent, McpServer)}


def dump():
    """The setup, by natural keys, secrets decrypted: what two databases must agree on."""
    return {
        "servers": sorted((s.name, s.kind, s.base_url, s.api_key, s.max_concurrency,
                           s.first_token_timeout) for s in ModelServer.objects.all()),
        "models": sorted((m.server.name if m.server_id else "", m.name, m.context_window,
                          m.max_output_tokens, m.input_price, m.output_price,
                          m.cached_input_price)
                         for m in LanguageModel.objects.select_related("server")),
        "agents": sorted((a.slug, a.name, a.description, a.system_prompt,
                          a.server.name if a.server_id else "", a.model,
                          tuple(a.fallback_models), a.temperature, a.is_default, a.enabled,
                          tuple(sorted(g.name for g in a.allowed_groups.all())), a.tools_mode,
                          tuple(sorted(s.name for s in a.tool_servers.all())),
                          tuple(sorted(f"{t.server.name}/{t.name}" for t in a.tools.all())),
                          a.max_tool_rounds)
                         for a in Agent.objects.select_related("server")),
        "mcp": sorted((s.name, s.transport, s.enabled, s.command, tuple(s.args),
                       tuple(sorted(stored_mapping(s.env).items())), s.cwd, s.url,
                       tuple(sorted(stored_mapping(s.headers).items())),
                       s.allow_private_addresses, s.connect_timeout, s.list_timeout,
                       s.call_timeout, tuple(sorted(g.name for g in s.allowed_groups.all())))
                      for s in McpServer.objects.all()),
    }


def empty_database():
    Agent.objects.all().delete()
    LanguageModel.objects.all().delete()
    ModelServer.objects.all().delete()
    McpServer.objects.all().delete()
    Group.objects.all().delete()


def test_a_file_creates_every_row_it_names(tmp_path):
    out = apply(tmp_path, SETUP)
    assert "9 created, 0 updated, 0 removed, 0 unchanged." in out  # a group among them
    vllm = ModelServer.objects.get(name="vllm")
    assert vllm.api_key == "sk-vllm-very-secret" and vllm.max_concurrency == 8
    assert ModelServer.objects.get(name="claude").api_key == ""
    gpt = LanguageModel.objects.get(server=vllm, name="openai/gpt-oss-120b")
    assert gpt.input_price == Decimal("0.15") and gpt.context_window == 131072
    assert LanguageModel.objects.get(server=None, name="gpt-oss:20b").max_output_tokens == 4096
    helper = Agent.objects.get(slug="helper")
    assert helper.is_default and helper.server == vllm and helper.temperature == 0.2
    assert helper.fallback_models == ["claude:claude-sonnet-4-5", "gpt-oss-20b"]
    ops = Agent.objects.get(slug="ops")
    assert ops.server is None and ops.tools_mode == "chosen" and ops.max_tool_rounds == 3
    assert [g.name for g in ops.allowed_groups.all()] == ["sso-ops"]
    assert [s.name for s in ops.tool_servers.all()] == ["remote"]
    remote = McpServer.objects.get(name="remote")
    assert remote.transport == "http" and remote.call_timeout == 30.0
    # References are stored as written, resolved only at connect.
    assert stored_mapping(remote.headers) == {"Authorization": "Bearer ${GITHUB_TOKEN}"}
    assert [g.name for g in remote.allowed_groups.all()] == ["sso-ops"]
    assert "sk-vllm-very-secret" not in out


def test_applying_twice_changes_nothing_the_second_time(tmp_path):
    apply(tmp_path, SETUP)
    before, counts = stamps(), dump()
    out = apply(tmp_path, SETUP)
    assert "0 created, 0 updated, 0 removed, 8 unchanged." in out
    assert stamps() == before and dump() == counts
    assert Group.objects.count() == 1


def test_a_change_updates_the_row_by_its_key_and_names_the_fields(tmp_path):
    apply(tmp_path, SETUP)
    changed = SETUP.replace("max_concurrency = 8", "max_concurrency = 9").replace(
        'name = "Ops"', 'name = "Operations"').replace("call_timeout = 30", "call_timeout = 31")
    out = apply(tmp_path, changed)
    assert "model server vllm: updated (max_concurrency)" in out
    assert "agent ops: updated (name)" in out
    assert "MCP server remote: updated (call_timeout)" in out
    assert "0 created, 3 updated, 0 removed, 5 unchanged." in out
    assert ModelServer.objects.count() == 2 and Agent.objects.count() == 2


def test_a_changed_key_is_reported_by_name_only(tmp_path, monkeypatch):
    apply(tmp_path, SETUP)
    monkeypatch.setenv("VLLM_API_KEY", "sk-vllm-rotated")
    out = apply(tmp_path, SETUP)
    assert "model server vllm: updated (api_key)" in out
    assert "sk-vllm" not in out
    assert ModelServer.objects.get(name="vllm").api_key == "sk-vllm-rotated"


def test_a_dry_run_says_what_would_change_and_writes_nothing(tmp_path):
    out = apply(tmp_path, SETUP, "--dry-run")
    assert "model server vllm: would be created" in out and "group sso-ops: would be created" in out
    assert "Dry run, nothing was saved: 9 created" in out
    assert not ModelServer.objects.exists() and not Agent.objects.exists()
    assert not Group.objects.exists() and not McpServer.objects.exists()

    apply(tmp_path, SETUP)
    before = stamps()
    out = apply(tmp_path, SETUP.replace("temperature = 0.2", "temperature = 0.4"), "--dry-run",
                "--prune")
    assert "agent helper: would be updated (temperature)" in out
    assert stamps() == before and Agent.objects.get(slug="helper").temperature == 0.2


def test_rows_absent_from_the_file_are_removed_only_with_prune(tmp_path):
    apply(tmp_path, SETUP)
    make_mcp_server(name="extra")
    tool = McpServer.objects.get(name="extra")
    do_store_listing(server_id=tool.pk, tools=[definition("echo")])
    # Without helper and vllm: helper's server is protected, so helper must go first.
    smaller = SETUP.split("[agents.helper]")[0].replace(
        "[model_servers.vllm]", "[model_servers.gone]").replace(
        'api_key_env = "VLLM_API_KEY"\n', "").replace('server = "vllm"\n', "") + \
        SETUP[SETUP.index("[agents.ops]"):]
    out = apply(tmp_path, smaller)
    assert "removed" not in out.replace("0 removed", "")
    assert set(ModelServer.objects.values_list("name", flat=True)) == {"vllm", "claude", "gone"}

    out = apply(tmp_path, smaller, "--prune")
    assert "agent helper: removed" in out and "model server vllm: removed" in out
    assert "model vllm:openai/gpt-oss-120b: removed" in out
    assert "MCP server extra: removed [with its 1 tools]" in out
    assert set(Agent.objects.values_list("slug", flat=True)) == {"ops"}
    assert set(ModelServer.objects.values_list("name", flat=True)) == {"claude", "gone"}
    assert not McpTool.objects.filter(server__name="extra").exists()
    assert Group.objects.filter(name="sso-ops").exists()  # groups are never removed


def test_prune_leaves_sections_the_file_does_not_have(tmp_path):
    apply(tmp_path, SETUP)
    only_mcp = SETUP[SETUP.index("[mcpServers.fetch]"):]
    out = apply(tmp_path, only_mcp, "--prune")
    assert "removed" not in out.replace("0 removed", "")
    assert Agent.objects.count() == 2 and ModelServer.objects.count() == 2


def test_prune_refuses_to_remove_a_server_an_agent_left_alone_uses(tmp_path):
    apply(tmp_path, SETUP)
    servers_only = '[model_servers.claude]\nkind = "anthropic"\nbase_url = "https://a.example"\n'
    with pytest.raises(CommandError) as caught:
        apply(tmp_path, servers_only, "--prune")
    assert "agent 'helper' uses model server 'vllm', which --prune would remove" in str(
        caught.value)
    assert ModelServer.objects.filter(name="vllm").exists()


def test_the_file_s_default_agent_replaces_another_default(tmp_path):
    Agent.objects.create(slug="old", name="Old", model="m", is_default=True)
    out = apply(tmp_path, SETUP)
    assert "agent old: updated (is_default)" in out
    assert list(Agent.objects.filter(is_default=True).values_list("slug", flat=True)) == [
        "helper"]


def test_export_then_apply_on_an_empty_database_gives_the_same_setup(tmp_path, monkeypatch):
    apply(tmp_path, SETUP)
    # Rows made in the admin: literal secrets, a listed server and an agent's single tool.
    command, args = stdio_command()
    fake = McpServer.objects.create(name="fake", command=command, args=list(args),
                                    cwd=str(ROOT), env=json.dumps({"TOKEN": "literal-secret"}))
    do_store_listing(server_id=fake.pk, tools=[definition("echo"), definition("add")])
    ops = Agent.objects.get(slug="ops")
    ops.tools.set([McpTool.objects.get(server=fake, name="echo")])
    ops.tool_servers.add(fake)
    Agent.objects.filter(slug="helper").update(system_prompt="Line one.\nLine \"two\".\n")
    before = dump()

    text = export()
    assert "sk-vllm-very-secret" not in text and "literal-secret" not in text
    assert 'api_key_env = "VLLM_API_KEY"' in text
    assert "set VLLM_API_KEY to this server's API key" in text
    assert 'TOKEN = "${FAKE_TOKEN}"' in text and "set FAKE_TOKEN" in text
    assert 'Authorization = "Bearer ${GITHUB_TOKEN}"' in text  # a reference is no secret

    empty_database()
    monkeypatch.setenv("FAKE_TOKEN", "literal-secret")
    out = apply(tmp_path, text, "--list-tools", name="exported.toml")
    assert "0 updated, 0 removed, 0 unchanged." in out
    after = dump()
    # The literal env value came back as the placeholder's reference, which resolves to it.
    fake_before = next(s for s in before["mcp"] if s[0] == "fake")
    fake_after = next(s for s in after["mcp"] if s[0] == "fake")
    assert fake_after[5] == (("TOKEN", "${FAKE_TOKEN}"),)
    assert fake_after[:5] + fake_after[6:] == fake_before[:5] + fake_before[6:]
    assert {k: v for k, v in after.items() if k != "mcp"} == {
        k: v for k, v in before.items() if k != "mcp"}
    assert [s for s in after["mcp"] if s[0] != "fake"] == [
        s for s in before["mcp"] if s[0] != "fake"]
    # Only the placeholder's comment is gone: the value is a reference now.
    assert export().splitlines() == [
        line for line in text.splitlines() if "set FAKE_TOKEN" not in line]


def test_export_of_an_empty_database_applies_to_nothing(tmp_path):
    text = export()
    out = apply(tmp_path, text, "--prune")
    assert "0 created, 0 updated, 0 removed, 0 unchanged." in out


def test_export_writes_a_file(tmp_path):
    apply(tmp_path, SETUP)
    call_command("export_config", str(tmp_path / "out.toml"), stderr=io.StringIO())
    assert (tmp_path / "out.toml").read_text() == export()


def test_a_claude_desktop_json_file_imports_through_the_same_path(tmp_path):
    server = make_mcp_server(name="github", command="old", connect_timeout=3.0)
    data = {"mcpServers": {
        "github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                   "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_desktopsecret"}},
        "linear": {"url": "https://mcp.linear.app/mcp", "autoApprove": ["x"]},
    }}
    out = apply(tmp_path, json.dumps(data), name="claude_desktop_config.json")
    assert "MCP server github: updated (command, args, env)" in out
    assert "MCP server linear: created" in out and 'ignored the key "autoApprove"' in out
    assert "ghp_desktopsecret" not in out
    server.refresh_from_db()
    # The import's rules: literal values as other clients write them, the admin's timeouts kept.
    assert stored_mapping(server.env) == {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_desktopsecret"}
    assert server.connect_timeout == 3.0
    again = apply(tmp_path, json.dumps(data), name="claude_desktop_config.json")
    assert "0 created, 0 updated, 0 removed, 2 unchanged." in again


def test_the_example_file_applies_cleanly_and_twice_changes_nothing(tmp_path):
    out = io.StringIO()
    call_command("apply_config", str(EXAMPLE), stdout=out)
    assert "warning" not in out.getvalue()
    assert Agent.objects.get(is_default=True).slug == "assistant"
    ops = Agent.objects.get(slug="ops")
    assert [g.name for g in ops.allowed_groups.all()] == ["engineering"]
    assert ops.tools_mode == "chosen" and [s.name for s in ops.tool_servers.all()] == ["time"]
    assert set(McpServer.objects.values_list("name", flat=True)) == {"time", "everything"}
    assert LanguageModel.objects.filter(server__name="fake").count() == 2
    again = io.StringIO()
    call_command("apply_config", str(EXAMPLE), stdout=again)
    assert " 0 created, 0 updated" in " " + again.getvalue().splitlines()[-1]


def test_secrets_are_never_in_the_output_of_either_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "sk-in-log-level")
    out = apply(tmp_path, SETUP) + apply(tmp_path, SETUP, "--dry-run")
    monkeypatch.setenv("VLLM_API_KEY", "sk-second-key")
    out += apply(tmp_path, SETUP)
    text = export()
    for secret in ("sk-vllm-very-secret", "sk-second-key", "ghp_notwritten", "sk-in-log-level"):
        assert secret not in out and secret not in text


# Bad input -----------------------------------------------------------------------------

def apply_error(tmp_path, text, *args) -> str:
    with pytest.raises(CommandError) as caught:
        apply(tmp_path, text, *args)
    return str(caught.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("[model_servers.x]\nbase_url = \"http://h/v1\"\napi_key = \"sk-literal\"\n",
     "model server 'x': \"api_key\" is refused: the file names secrets, never holds them; "
     "name the variable with api_key_env (api_key_env = \"X_API_KEY\")"),
    ("[model_servers.x]\nbase_url = \"http://h/v1\"\napi_key_env = \"sk-literal-1\"\n",
     "model server 'x': \"api_key_env\" must name an environment variable"),
    ("[model_servers.x]\nbase_url = \"http://h/v1\"\napi_key_env = \"NOT_SET_ANYWHERE\"\n",
     "model server 'x', api_key_env: the environment variable NOT_SET_ANYWHERE is not set"),
    ("[model_servers.x]\nbase_url = \"http://h/v1\"\nmax_concurency = 3\n",
     "model server 'x': unknown key \"max_concurency\""),
    ("[model_servers.x]\nbase_url = \"http://h/v1\"\nmax_concurrency = \"3\"\n",
     "model server 'x': \"max_concurrency\" must be a whole number"),
    ("[model_servers.x]\nkind = \"grpc\"\nbase_url = \"http://h/v1\"\n",
     "model server 'x': \"kind\" must be one of 'openai', 'anthropic'"),
    ("[model_servers.x]\nbase_url = \"ftp://h/\"\n",
     "model server 'x': \"base_url\" must be an http:// or https:// URL"),
    ("[[models]]\nname = \"m\"\ninput_price = 0.12345\n",
     "models[0] (m): \"input_price\" may have at most 4 decimal places"),
    ("[[models]]\nname = \"m\"\nserver = \"nowhere\"\n",
     "model 'nowhere:m', server: no model server 'nowhere' in the file or the database"),
    ("[agents.a]\nname = \"A\"\n", "agent 'a': \"model\" is required"),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\nserver = \"nowhere\"\n",
     "agent 'a', server: no model server 'nowhere' in the file or the database"),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\ntemperature = 3\n",
     "agent 'a': \"temperature\" must be at least 0 and at most 2"),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\nallowed_groups = \"staff\"\n",
     "agent 'a': \"allowed_groups\" must be a list of strings"),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\ntool_servers = [\"x\"]\n",
     "agent 'a': tool_servers and tools are read only with tools_mode = \"chosen\""),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\ntools_mode = \"chosen\"\ntools = [\"echo\"]\n",
     "agent 'a': \"tools[0]\" must name a tool as \"server/tool\""),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\ntools_mode = \"chosen\"\ntool_servers = [\"x\"]\n",
     "agent 'a', tool_servers: no MCP server 'x' in the file or the database"),
    ("[agents.a]\nname = \"A\"\nmodel = \"m\"\nis_default = true\nallowed_groups = [\"g\"]\n",
     "agent 'a': the default agent is everyone's"),
    ("[agents.a]\nname = \"" + "n" * 101 + "\"\nmodel = \"m\"\n",
     "agent 'a', name: Ensure this value has at most 100 characters"),
    ("[mcpServers.x]\ncommand = \"node\"\nenv = { TOKEN = \"sk-literal\" }\n",
     "MCP server 'x', env TOKEN: write the value as a ${VAR} reference"),
    ("[mcpServers.x]\nurl = \"https://h.example/\"\nheaders = { A = \"Bearer sk-literal\" }\n",
     "MCP server 'x', header A: write the value as a ${VAR} reference"),
    ("[mcpServers.x]\ncommand = \"node\"\nautoApprove = [\"a\"]\n",
     "MCP server 'x': unknown key \"autoApprove\""),
    ("[mcpServers.x]\ncommand = \"node\"\ncall_timeout = 0\n",
     "MCP server 'x': \"call_timeout\" must be above 0"),
    ("[mcpServers.x]\n", "MCP server 'x' needs a \"command\""),
    ("[servers.x]\n", "unknown section \"servers\""),
    ("[agents.a\n", "is not valid TOML"),
])
def test_bad_input_is_a_clear_error_naming_the_section_and_field(tmp_path, text, expected):
    message = apply_error(tmp_path, text)
    assert expected in message
    assert "sk-literal" not in message


def test_nothing_is_applied_when_any_problem_is_found(tmp_path):
    bad = SETUP + "\n[agents.broken]\nname = \"B\"\nmodel = \"m\"\nserver = \"nowhere\"\n"
    message = apply_error(tmp_path, bad)
    assert "agent 'broken', server: no model server 'nowhere'" in message
    assert not ModelServer.objects.exists() and not Agent.objects.exists()
    assert not McpServer.objects.exists() and not Group.objects.exists()


def test_every_problem_is_listed_at_once(tmp_path):
    message = apply_error(tmp_path, "[agents.a]\nnme = 1\n[agents.b]\nname = 2\nmodel = \"m\"\n")
    assert message.startswith("4 problems in ") and "nothing was applied" in message
    assert "agent 'a': unknown key \"nme\"" in message and "agent 'a': \"name\" is required" in (
        message)
    assert "agent 'b': \"name\" must be a string" in message


def test_a_tool_must_be_one_its_server_listed(tmp_path):
    server = make_mcp_server(name="srv")
    do_store_listing(server_id=server.pk, tools=[definition("echo"), definition("add")])
    agent = ("[agents.a]\nname = \"A\"\nmodel = \"m\"\ntools_mode = \"chosen\"\n"
             "tools = [\"srv/ecko\"]\n")
    message = apply_error(tmp_path, agent)
    assert "agent 'a', tools: 'srv/ecko': MCP server 'srv' has no tool 'ecko' (its tools: " \
           "add, echo)" in message
    apply(tmp_path, agent.replace("ecko", "echo"))
    assert [t.name for t in Agent.objects.get(slug="a").tools.all()] == ["echo"]


def test_a_tool_of_a_server_never_listed_asks_for_a_listing(tmp_path):
    text = ("[mcpServers.new]\ncommand = \"node\"\n[agents.a]\nname = \"A\"\nmodel = \"m\"\n"
            "tools_mode = \"chosen\"\ntools = [\"new/echo\"]\n")
    message = apply_error(tmp_path, text)
    assert "MCP server 'new' has no tools listed yet (run apply_config with --list-tools" in (
        message)
    assert not McpServer.objects.exists()


def test_list_tools_lists_a_new_server_so_its_tools_can_be_chosen(tmp_path):
    command, args = stdio_command()
    text = (f"[mcpServers.fake]\ncommand = {json.dumps(command)}\nargs = {json.dumps(args)}\n"
            f"cwd = {json.dumps(str(ROOT))}\n"
            "[agents.a]\nname = \"A\"\nmodel = \"m\"\ntools_mode = \"chosen\"\n"
            "tools = [\"fake/echo\", \"fake/add\"]\n")
    apply(tmp_path, text, "--list-tools")
    assert sorted(t.name for t in Agent.objects.get(slug="a").tools.all()) == ["add", "echo"]


def test_an_unset_mcp_reference_is_a_warning_not_an_error(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    out = apply(tmp_path, SETUP)
    assert ("warning: MCP server 'remote', header Authorization: the environment variable "
            "GITHUB_TOKEN is not set here") in out
    assert McpServer.objects.filter(name="remote").exists()


def test_two_default_agents_are_refused(tmp_path):
    text = ("[agents.a]\nname = \"A\"\nmodel = \"m\"\nis_default = true\n"
            "[agents.b]\nname = \"B\"\nmodel = \"m\"\nis_default = true\n")
    assert "only one agent can be the default" in apply_error(tmp_path, text)


def test_an_empty_api_key_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "")
    message = apply_error(tmp_path, SETUP)
    assert "the environment variable VLLM_API_KEY is empty" in message
