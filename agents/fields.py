"""A text field encrypted at rest, for API keys and MCP headers.

The key comes from FIELD_ENCRYPTION_KEY, or is derived from SECRET_KEY when that is unset, so a
database dump alone never reveals a secret. Values are write-only in the admin (see admin.py).

Rotation works like Django's SECRET_KEY_FALLBACKS: new values are written under the current key,
and values are read under it or any older key still configured (see _keys), until
`manage.py reencrypt_secrets` has rewritten them all under the current one.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

_PREFIX = "fernet:"
_KEY_SETTINGS = frozenset(
    {"SECRET_KEY", "SECRET_KEY_FALLBACKS", "FIELD_ENCRYPTION_KEY", "FIELD_ENCRYPTION_KEY_FALLBACKS"}
)


def _derive(raw: str) -> Fernet:
    # Any string may be a key: it is hashed into a Fernet key. Changing this derivation would
    # make every existing database unreadable.
    digest = hashlib.sha256(("chatsite-field-encryption:" + raw).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@cache
def _keys() -> MultiFernet:
    # MultiFernet encrypts with the first key and decrypts with any. The SECRET_KEY-derived keys
    # come after FIELD_ENCRYPTION_KEY's so that setting FIELD_ENCRYPTION_KEY on an existing
    # database, or rotating SECRET_KEY while it is unset, keeps the old values readable.
    raws = [settings.FIELD_ENCRYPTION_KEY or settings.SECRET_KEY,
            *settings.FIELD_ENCRYPTION_KEY_FALLBACKS,
            settings.SECRET_KEY,
            *settings.SECRET_KEY_FALLBACKS]
    return MultiFernet([_derive(raw) for raw in dict.fromkeys(raws)])


def key_settings_changed(*, setting: str, **_: Any) -> None:
    """setting_changed receiver: the keys are cached per process and built from settings."""
    if setting in _KEY_SETTINGS:
        _keys.cache_clear()


def encrypt(value: str) -> str:
    return _PREFIX + _keys().encrypt(value.encode()).decode() if value else ""


def decrypt(stored: str, *, where: str = "an encrypted field") -> str:
    """The plaintext of a stored value. Raises ImproperlyConfigured, naming `where` and what to
    configure but never a key, when no configured key can read it."""
    if not stored:
        return ""
    if not stored.startswith(_PREFIX):
        raise ImproperlyConfigured(f"{where} holds a value that was never encrypted.")
    try:
        return _keys().decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            f"A secret stored in {where} cannot be decrypted with the current key or any "
            "fallback. Put the FIELD_ENCRYPTION_KEY it was written under in "
            "FIELD_ENCRYPTION_KEY_FALLBACKS or, if FIELD_ENCRYPTION_KEY was unset then, the "
            "SECRET_KEY of that time in SECRET_KEY_FALLBACKS; then run manage.py "
            "reencrypt_secrets."
        ) from None


class EncryptedTextField(models.TextField):
    def from_db_value(self, value, expression, connection):
        return decrypt(value, where=_label(self)) if value is not None else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value else ""


def _label(field: models.Field) -> str:
    return f"{field.model._meta.label}.{field.name}"


@dataclass(frozen=True)
class Reencrypted:
    field: str  # "app_label.Model.field"
    count: int


def do_reencrypt_secrets(*, dry_run: bool) -> list[Reencrypted]:
    """Rewrite every EncryptedTextField value of every model under the current key, in one
    transaction, by queryset.update (no save(), no signals, auto_now untouched). Every value is
    decrypted before the first write, so a value no key can read raises ImproperlyConfigured
    with nothing written. Values already under the current key are rewritten too."""
    done = []
    with transaction.atomic():
        pending = []
        for field in _encrypted_fields():
            manager = field.model._base_manager
            # The stored text, not the decrypted value: decrypting here names the row.
            rows = (manager.select_for_update()
                    .annotate(stored_text=models.ExpressionWrapper(
                        models.F(field.attname), output_field=models.TextField()))
                    .exclude(stored_text__isnull=True).exclude(stored_text="")
                    .order_by("pk").values_list("pk", "stored_text"))
            plain = [(pk, decrypt(stored, where=f"{_label(field)} (pk {pk})"))
                     for pk, stored in rows]
            pending.append((field, plain))
            done.append(Reencrypted(field=_label(field), count=len(plain)))
        if not dry_run:
            for field, plain in pending:
                for pk, value in plain:
                    field.model._base_manager.filter(pk=pk).update(**{field.attname: value})
    return done


def _encrypted_fields() -> list[models.Field]:
    # Proxies share their concrete model's table, and a child table holds only its local
    # fields: each column is visited once.
    return [field for model in apps.get_models() if not model._meta.proxy
            for field in model._meta.local_concrete_fields
            if isinstance(field, EncryptedTextField)]
