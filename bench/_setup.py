"""`python -m bench._setup N`: create N bench users with session cookies in the configured
database (run by bench/stream.py after migrate), each with a personal API key too; prints
{"sessions": [session key, ...], "api_keys": [API key, ...]} as JSON."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    count = int(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import transaction

    from accounts.api_keys import do_create_api_key

    User = get_user_model()
    unusable = make_password(None)  # no password hashing: 200 PBKDF2 runs would take a minute
    with transaction.atomic():
        User.objects.bulk_create(
            [User(username=f"bench{i}", password=unusable) for i in range(count)])
        users = list(User.objects.filter(username__startswith="bench").order_by("id"))
        keys = []
        for user in users:
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            keys.append(session.session_key)
    api_keys = [do_create_api_key(user=user, name="bench")[1] for user in users]
    print(json.dumps({"sessions": keys, "api_keys": api_keys}))


if __name__ == "__main__":
    main()
