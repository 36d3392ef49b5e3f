"""Configuration comes from the environment; bad values stop the start and name the variable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789"


def manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    return run(["manage.py", *args], env=env, tmp_path=tmp_path)


def load_settings(*, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Import the settings the way every process starts (fast: no app checks)."""
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; django.setup()"
    return run(["-c", code], env=env, tmp_path=tmp_path)


def run(args: list[str], *, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS",
                          "SECRET_KEY_FALLBACKS", "FIELD_ENCRYPTION_KEY",
                          "FIELD_ENCRYPTION_KEY_FALLBACKS", "OIDC_SERVER_URL", "OIDC_CLIENT_ID",
                          "OIDC_CLIENT_SECRET", "OIDC_NAME", "SSO_ONLY", "SSO_GROUPS_CLAIM",
                          "SSO_ADMIN_GROUPS", "SSO_ALLOWED_GROUPS"}}
    clean.update({"DATA_DIR": str(tmp_path)}, **env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True,
        text=True, timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DATABASE_URL", "mysql://x@localhost/db", "DATABASE_URL must be a URL starting with"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be a URL starting with"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("SECRET_KEY", "short", "SECRET_KEY is too weak"),
        ("FIELD_ENCRYPTION_KEY", "x" * 20 + "abcdefghijk", "FIELD_ENCRYPTION_KEY is too weak"),
        ("LLM_BASE_URL", "ollama", "LLM_BASE_URL must be a URL"),
        ("LLM_FIRST_TOKEN_TIMEOUT", "soon", "LLM_FIRST_TOKEN_TIMEOUT must be a number"),
        ("CSRF_TRUSTED_ORIGINS", "example.com", "CSRF_TRUSTED_ORIGINS entries must start with"),
        ("LLM_KIND", "gemini", "LLM_KIND must be one of"),
        ("LLM_HTTP_TRANSPORT", "curl", "LLM_HTTP_TRANSPORT must be one of"),
        ("OIDC_SERVER_URL", "login.example.com", "OIDC_SERVER_URL must be a URL"),
        ("OIDC_SERVER_URL", "https://login.example.com", "OIDC_CLIENT_ID is not"),
        ("SSO_ONLY", "sometimes", "SSO_ONLY must be true or false"),
    ],
)
def test_invalid_configuration_stops_the_start_naming_the_variable(name, value, says, tmp_path):
    result = load_settings(env={name: value}, tmp_path=tmp_path)
    assert result.returncode != 0
    assert says in result.stderr


def test_rotation_keys_are_read_from_the_environment(tmp_path):
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; "
            "django.setup(); from django.conf import settings as s; print(repr(("
            "s.FIELD_ENCRYPTION_KEY, s.FIELD_ENCRYPTION_KEY_FALLBACKS, s.SECRET_KEY_FALLBACKS)))")
    field_key = "f" * 10 + "abcdefghijklmnopqrstuvwxyz"
    result = run(["-c", code], env={"FIELD_ENCRYPTION_KEY": field_key,
                                    "FIELD_ENCRYPTION_KEY_FALLBACKS": "old-field-1, old-field-2",
                                    "SECRET_KEY_FALLBACKS": "old-secret"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(
        (field_key, ["old-field-1", "old-field-2"], ["old-secret"]))


def test_first_run_needs_no_configuration_and_keeps_its_secret_key(tmp_path):
    first = load_settings(env={}, tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    key = key_file.read_text()
    assert len(key) >= 50
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    load_settings(env={}, tmp_path=tmp_path)
    assert key_file.read_text() == key


def test_production_settings_pass_the_deploy_check(tmp_path):
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env={"SECRET_KEY": STRONG_KEY, "HTTPS": "true", "ALLOWED_HOSTS": "chat.example.com",
             "DEBUG": "false"},
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_migrations_match_the_models(tmp_path):
    result = manage("makemigrations", "--check", "--dry-run", env={}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_identity_provider_and_sso_rules_come_from_the_environment(tmp_path):
    code = ("import django, os, json; os.environ['DJANGO_SETTINGS_MODULE'] = 'chatsite.settings'; "
            "django.setup(); from django.conf import settings as s; print(json.dumps(["
            "s.SOCIALACCOUNT_PROVIDERS['openid_connect'], s.SSO_ONLY, s.SOCIALACCOUNT_ONLY, "
            "s.SSO_GROUPS_CLAIM, s.SSO_ADMIN_GROUPS, s.SSO_ALLOWED_GROUPS]))")
    result = run(["-c", code], env={
        "OIDC_SERVER_URL": "https://login.example.com/realms/acme/", "OIDC_CLIENT_ID": "chat",
        "OIDC_CLIENT_SECRET": "s3cret", "OIDC_NAME": "Acme SSO", "SSO_ONLY": "true",
        "SSO_GROUPS_CLAIM": "roles", "SSO_ADMIN_GROUPS": "chat-admins, it",
        "SSO_ALLOWED_GROUPS": "chat-users"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    provider, sso_only, socialaccount_only, claim, admins, allowed = json.loads(result.stdout)
    assert provider == {"OAUTH_PKCE_ENABLED": True, "APPS": [{
        "provider_id": "sso", "name": "Acme SSO", "client_id": "chat", "secret": "s3cret",
        "settings": {"server_url": "https://login.example.com/realms/acme",
                     "oauth_pkce_enabled": True}}]}
    assert (sso_only, socialaccount_only, claim, admins, allowed) == (
        True, True, "roles", ["chat-admins", "it"], ["chat-users"])

    unset = run(["-c", code], env={}, tmp_path=tmp_path)
    assert json.loads(unset.stdout)[:2] == [{"OAUTH_PKCE_ENABLED": True}, False]


# Reaches neither the tests' database nor the channel layer (tests/conftest.py).
pytestmark = pytest.mark.backend_free
