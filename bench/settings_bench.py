"""Bench-only settings: the real settings plus a database write counter (bench.countwrites).

Used only by the Daphne process that `bench/stream.py` starts; nothing else imports it.
`--patch NAME` (env BENCH_PATCH) turns on what-if changes from bench/patches; none by default.
"""

from chatsite.settings import *  # noqa: F403
from chatsite.settings import CHANNEL_LAYERS, DATABASES, INSTALLED_APPS

from bench.patches import enabled

INSTALLED_APPS = [*INSTALLED_APPS, "bench.countwrites"]

if "sqlite-persistent" in enabled() and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = None
if "layer" in enabled() and CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
    CHANNEL_LAYERS["default"]["BACKEND"] = "bench.patches.layer.LazyCleanInMemoryChannelLayer"
