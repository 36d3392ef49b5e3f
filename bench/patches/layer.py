"""The `layer` what-if (see bench/patches/__init__.py)."""

from __future__ import annotations

import time

from channels.layers import InMemoryChannelLayer


class LazyCleanInMemoryChannelLayer(InMemoryChannelLayer):
    _last_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_clean >= 1.0:
            self._last_clean = now
            super()._clean_expired()
