import re

from agents.tool_names import exposed_name

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_names_hold_server_and_tool_and_fit_the_providers_rules():
    assert exposed_name(server="github.com", tool="create issue") == "github_com__create_issue"
    for server, tool in [("a" * 80, "b" * 60), ("ü-server", "ツール"), ("s", "x" * 100),
                         ("my server", "get.time")]:
        name = exposed_name(server=server, tool=tool)
        assert VALID.match(name), name
    long_tool = exposed_name(server="srv", tool="t" * 60)
    assert "t" * 60 in long_tool  # the tool's own name is kept whole when it fits


def test_a_taken_name_gets_a_stable_suffix():
    first = exposed_name(server="a.b", tool="x", taken={"a_b__x"})
    assert first != "a_b__x" and first.startswith("a_b__x_") and VALID.match(first)
    assert exposed_name(server="a.b", tool="x", taken={"a_b__x"}) == first
