"""The audit views in the admin: readable by staff, never editable there."""

import pytest
from django.contrib.auth.models import Permission

from agents.models import ModelServer
from tests.factories import make_conversation, make_message, make_tool_call, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor(client):
    user = make_user(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_conversation", "view_message", "view_toolcall"]))
    client.force_login(user)
    return client


@pytest.fixture
def record():
    owner = make_user(username="alice")
    conversation = make_conversation(owner=owner, title="Quarterly numbers")
    question = make_message(conversation=conversation, content="What were Q3 sales?")
    answer = make_message(conversation=conversation, role="assistant", parent=question,
                          content="Let me look.", model="gpt-oss-120b", input_tokens=12,
                          output_tokens=40)
    call = make_tool_call(message=answer, tool_name="sales_report", server="erp",
                          arguments={"quarter": "Q3"}, result="1.2M", status="complete")
    return conversation, answer, call


def test_staff_read_the_audit_lists_with_filters_and_search(auditor, record):
    conversation, answer, call = record
    page = auditor.get("/admin/conversations/message/?q=Q3+sales")
    assert page.status_code == 200
    assert "What were Q3 sales?" in page.text and "Let me look." not in page.text
    for url in ("/admin/conversations/message/?status__exact=complete&model=gpt-oss-120b",
                "/admin/conversations/toolcall/?tool_name=sales_report",
                f"/admin/conversations/conversation/?owner__id__exact={conversation.owner_id}"):
        response = auditor.get(url)
        assert response.status_code == 200, url
    assert "sales_report" in auditor.get("/admin/conversations/toolcall/").text
    assert "Quarterly numbers" in auditor.get("/admin/conversations/conversation/").text


def test_a_messages_tool_calls_are_shown_under_it(auditor, record):
    _, answer, call = record
    page = auditor.get(f"/admin/conversations/message/{answer.pk}/change/")
    assert page.status_code == 200
    assert "sales_report" in page.text and "1.2M" in page.text and "erp" in page.text


def test_staff_cannot_add_change_or_delete_the_record(auditor, record):
    conversation, answer, call = record
    assert auditor.get("/admin/conversations/message/add/").status_code == 403
    response = auditor.post(f"/admin/conversations/message/{answer.pk}/change/",
                            {"content": "rewritten"})
    assert response.status_code == 403
    assert auditor.post(f"/admin/conversations/message/{answer.pk}/delete/",
                        {"post": "yes"}).status_code == 403
    answer.refresh_from_db()
    assert answer.content == "Let me look."


def test_even_superusers_cannot_rewrite_the_record(client, record):
    _, answer, _ = record
    client.force_login(make_user(is_staff=True, is_superuser=True))
    page = client.get(f"/admin/conversations/message/{answer.pk}/change/")
    assert page.status_code == 200
    assert 'name="content"' not in page.text  # shown, not editable


# The model server form's inline of models, empty.
NO_MODELS = {"models-TOTAL_FORMS": 0, "models-INITIAL_FORMS": 0}


def test_a_model_server_api_key_is_write_only(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    response = client.post("/admin/agents/modelserver/add/", {
        "name": "vllm", "kind": "openai", "base_url": "http://vllm:8000/v1",
        "api_key": "sk-secret-123", "max_concurrency": 8, "first_token_timeout": 60,
        **NO_MODELS})
    assert response.status_code == 302
    server = ModelServer.objects.get(name="vllm")
    assert server.api_key == "sk-secret-123"
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM agents_modelserver WHERE id = %s", [server.pk])
        assert "sk-secret-123" not in cursor.fetchone()[0]  # encrypted at rest
    page = client.get(f"/admin/agents/modelserver/{server.pk}/change/")
    assert "sk-secret-123" not in page.text
    # Saving without typing a key keeps the stored one.
    client.post(f"/admin/agents/modelserver/{server.pk}/change/", {
        "name": "vllm", "kind": "openai", "base_url": "http://vllm:8000/v1", "api_key": "",
        "max_concurrency": 8, "first_token_timeout": 60, **NO_MODELS})
    server.refresh_from_db()
    assert server.api_key == "sk-secret-123"


def test_opening_someones_conversation_in_the_admin_is_recorded(auditor, record):
    from conversations.models import AdminRead

    conversation, answer, call = record
    assert auditor.get("/admin/conversations/conversation/").status_code == 200
    assert not AdminRead.objects.exists()  # a list is not a read of one conversation
    for url, what in ((f"/admin/conversations/conversation/{conversation.pk}/change/",
                       "the conversation"),
                      (f"/admin/conversations/message/{answer.pk}/change/", f"message {answer.pk}"),
                      (f"/admin/conversations/toolcall/{call.pk}/change/", f"tool call {call.pk}")):
        assert auditor.get(url).status_code == 200
        read = AdminRead.objects.latest("id")
        assert (read.owner.username, read.conversation_ref, read.what) == (
            "alice", str(conversation.pk), what)
        assert read.reader.is_staff and read.reader != read.owner
    assert AdminRead.objects.count() == 3


def test_the_record_of_reads_is_for_superusers_only_and_read_only(auditor, record, admin_client):
    from conversations.models import AdminRead

    conversation, _, _ = record
    auditor.get(f"/admin/conversations/conversation/{conversation.pk}/change/")
    read = AdminRead.objects.get()
    # A staff member who may read the audit may not read who read it.
    assert auditor.get("/admin/conversations/adminread/").status_code == 403
    listing = admin_client.get("/admin/conversations/adminread/")
    assert listing.status_code == 200 and "alice" in listing.text
    page = admin_client.get(f"/admin/conversations/adminread/{read.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.text
    assert admin_client.post(f"/admin/conversations/adminread/{read.pk}/delete/",
                             {"post": "yes"}).status_code == 403
    assert admin_client.get("/admin/conversations/adminread/add/").status_code == 403
    assert AdminRead.objects.count() == 1


async def _read_stream(response) -> bytes:
    return b"".join([part async for part in response.streaming_content])


def test_an_export_is_one_json_line_per_conversation_and_each_is_recorded(admin_client, record):
    import json

    from asgiref.sync import async_to_sync

    from conversations.models import AdminRead

    conversation, answer, call = record
    other = make_conversation(owner=make_user(username="bob"), title="Other")
    make_message(conversation=other, content="Bob asks.")
    response = admin_client.post("/admin/conversations/conversation/", {
        "action": "export_jsonl", "_selected_action": [conversation.pk, other.pk]})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in
             async_to_sync(_read_stream)(response).decode().splitlines()]
    assert {line["title"] for line in lines} == {"Quarterly numbers", "Other"}
    alice = next(line for line in lines if line["owner"] == "alice")
    assert [m["content"] for m in alice["messages"]] == ["What were Q3 sales?", "Let me look."]
    assert alice["messages"][1]["parent"] == alice["messages"][0]["id"]
    (exported_call,) = alice["messages"][1]["tool_calls"]
    assert (exported_call["tool"], exported_call["arguments"], exported_call["result"]) == (
        "sales_report", {"quarter": "Q3"}, "1.2M")
    assert alice["messages"][1]["usage"]["output_tokens"] == 40
    reads = AdminRead.objects.filter(what="export of the conversation")
    assert sorted(r.owner.username for r in reads) == ["alice", "bob"]


def test_an_export_streams_in_batches(admin_client, monkeypatch):
    import json

    from asgiref.sync import async_to_sync

    from conversations import export

    monkeypatch.setattr(export, "BATCH", 3)
    owner = make_user(username="carol")
    made = {str(make_conversation(owner=owner, title=f"c{i}").pk) for i in range(7)}
    response = admin_client.post("/admin/conversations/conversation/", {
        "action": "export_jsonl", "_selected_action": list(made)})
    ids = [json.loads(line)["id"]
           for line in async_to_sync(_read_stream)(response).decode().splitlines()]
    assert len(ids) == 7 and set(ids) == made  # three batches, nothing repeated or lost


def test_legal_hold_is_a_superusers_action(admin_client, auditor, record):
    from conversations.models import Conversation

    conversation, _, _ = record
    admin_client.post("/admin/conversations/conversation/", {
        "action": "hold", "_selected_action": [conversation.pk]})
    assert Conversation.objects.get(pk=conversation.pk).legal_hold
    page = auditor.get("/admin/conversations/conversation/")
    assert 'value="hold"' not in page.text  # staff who read the audit cannot change it
    admin_client.post("/admin/conversations/conversation/", {
        "action": "release", "_selected_action": [conversation.pk]})
    assert not Conversation.objects.get(pk=conversation.pk).legal_hold


def test_conversations_filter_by_group_model_tool_and_status(auditor, record):
    from django.contrib.auth.models import Group

    conversation, _, _ = record
    other = make_conversation(owner=make_user(username="bob"), title="Unrelated talk")
    make_message(conversation=other, role="assistant", model="claude", status="failed")
    finance = Group.objects.create(name="finance")
    conversation.owner.groups.add(finance)
    base = "/admin/conversations/conversation/"
    for query in (f"owner__groups={finance.pk}", "messages__model=gpt-oss-120b",
                  "messages__tool_calls__tool_name=sales_report"):
        page = auditor.get(f"{base}?{query}").text
        assert "Quarterly numbers" in page and "Unrelated talk" not in page, query
    page = auditor.get(f"{base}?messages__status=failed").text
    assert "Unrelated talk" in page and "Quarterly numbers" not in page
