"""Bench-only settings: the real settings plus a database write counter (bench.countwrites).

Used only by the Daphne process that `bench/stream.py` starts; nothing else imports it.
"""

from chatsite.settings import *  # noqa: F403
from chatsite.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.countwrites"]
