"""Secrets encrypted at rest, key rotation through the fallbacks, and reencrypt_secrets."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from agents.models import ModelServer

pytestmark = pytest.mark.django_db

KEY_A = "secret-key-A-" + "a1b2c3d4e5" * 5
KEY_B = "secret-key-B-" + "f6g7h8i9j0" * 5
KEY_C = "secret-key-C-" + "u1v2w3x4y5" * 5
FIELD_KEY_1 = "field-key-one-" + "k1l2m3n4o5" * 3
FIELD_KEY_2 = "field-key-two-" + "p6q7r8s9t0" * 3
PLAINTEXT = "sk-live-do-not-leak-1234"


@pytest.fixture(autouse=True)
def keys(settings):
    """SECRET_KEY A, no field key, no fallbacks; each test rotates from here."""
    settings.SECRET_KEY = KEY_A
    settings.SECRET_KEY_FALLBACKS = []
    settings.FIELD_ENCRYPTION_KEY = ""
    settings.FIELD_ENCRYPTION_KEY_FALLBACKS = []
    return settings


def make_server(*, api_key: str = PLAINTEXT, name: str = "vllm") -> ModelServer:
    return ModelServer.objects.create(name=name, base_url="http://vllm:8000/v1", api_key=api_key)


def stored(server: ModelServer) -> str:
    """The column as the database holds it, past the field's decryption."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT api_key FROM {ModelServer._meta.db_table} WHERE id = %s",
                       [server.pk])
        return cursor.fetchone()[0]


def api_key(server: ModelServer) -> str:
    return ModelServer.objects.get(pk=server.pk).api_key


def assert_names_no_secret(text: str) -> None:
    for secret in (PLAINTEXT, KEY_A, KEY_B, KEY_C, FIELD_KEY_1, FIELD_KEY_2):
        assert secret not in text


def test_a_secret_is_stored_encrypted_and_read_back_in_plain():
    server = make_server()
    assert PLAINTEXT not in stored(server)
    assert api_key(server) == PLAINTEXT
    assert stored(make_server(api_key="", name="open")) == ""


def test_after_rotating_secret_key_the_old_one_in_the_fallbacks_still_reads(keys):
    server = make_server()
    keys.SECRET_KEY, keys.SECRET_KEY_FALLBACKS = KEY_B, [KEY_A]
    assert api_key(server) == PLAINTEXT


def test_without_the_old_key_the_error_says_what_to_set_and_no_secret(keys):
    server = make_server()
    keys.SECRET_KEY = KEY_B
    with pytest.raises(ImproperlyConfigured) as error:
        api_key(server)
    message = str(error.value)
    assert "agents.ModelServer.api_key" in message
    assert "SECRET_KEY_FALLBACKS" in message and "FIELD_ENCRYPTION_KEY_FALLBACKS" in message
    assert_names_no_secret(message)


def test_a_field_encryption_key_takes_new_writes_and_old_values_still_read(keys):
    old = make_server(name="old")
    keys.FIELD_ENCRYPTION_KEY = FIELD_KEY_1
    new = make_server(name="new")
    assert (api_key(old), api_key(new)) == (PLAINTEXT, PLAINTEXT)
    # The new value depends on the field key alone: SECRET_KEY may now rotate freely.
    keys.SECRET_KEY = KEY_B
    assert api_key(new) == PLAINTEXT
    with pytest.raises(ImproperlyConfigured):
        api_key(old)


def test_an_old_field_encryption_key_in_its_fallbacks_still_reads(keys):
    keys.FIELD_ENCRYPTION_KEY = FIELD_KEY_1
    server = make_server()
    keys.FIELD_ENCRYPTION_KEY = FIELD_KEY_2
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY_FALLBACKS"):
        api_key(server)
    keys.FIELD_ENCRYPTION_KEY_FALLBACKS = [FIELD_KEY_1]
    assert api_key(server) == PLAINTEXT


def test_reencrypt_secrets_lets_the_fallbacks_go_without_touching_the_rows(keys):
    server = make_server()
    make_server(api_key="", name="open")
    updated_at = ModelServer.objects.get(pk=server.pk).updated_at
    keys.SECRET_KEY, keys.SECRET_KEY_FALLBACKS = KEY_B, [KEY_A]
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "Re-encrypted 1 value(s) of agents.ModelServer.api_key" in out.getvalue()
    assert_names_no_secret(out.getvalue())
    keys.SECRET_KEY_FALLBACKS = []
    assert api_key(server) == PLAINTEXT
    assert PLAINTEXT not in stored(server)
    assert ModelServer.objects.get(pk=server.pk).updated_at == updated_at


def test_reencrypt_secrets_moves_values_onto_a_new_field_encryption_key(keys):
    server = make_server()
    keys.FIELD_ENCRYPTION_KEY = FIELD_KEY_1
    call_command("reencrypt_secrets", stdout=StringIO())
    keys.SECRET_KEY = KEY_B
    assert api_key(server) == PLAINTEXT


def test_a_dry_run_reports_and_writes_nothing(keys):
    server = make_server()
    before = stored(server)
    keys.SECRET_KEY, keys.SECRET_KEY_FALLBACKS = KEY_B, [KEY_A]
    out = StringIO()
    call_command("reencrypt_secrets", "--dry-run", stdout=out)
    assert "Would re-encrypt 1 value(s) of agents.ModelServer.api_key" in out.getvalue()
    assert "nothing was written" in out.getvalue()
    assert stored(server) == before


def test_a_value_no_key_reads_stops_the_command_before_any_write(keys):
    readable = make_server(name="readable")
    keys.SECRET_KEY = KEY_B
    lost = make_server(name="lost")
    before = stored(lost), stored(readable)
    keys.SECRET_KEY, keys.SECRET_KEY_FALLBACKS = KEY_C, [KEY_A]
    with pytest.raises(CommandError) as error:
        call_command("reencrypt_secrets", stdout=StringIO())
    message = str(error.value)
    assert f"agents.ModelServer.api_key (pk {lost.pk})" in message
    assert "Nothing was written" in message
    assert_names_no_secret(message)
    assert (stored(lost), stored(readable)) == before
