"""Server-wide defaults of the fake LLM server.

A `FakeConfig` is immutable: a running server swaps the whole value when POST /_fake/config
arrives, so a request that already started keeps the config it started with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MODELS = ("fake-model", "fake-model-2", "gpt-oss-120b")
REASONING_FIELDS = ("reasoning_content", "reasoning")
# Statuses a `fail` spec may ask for; each has a matching error body in both wire formats.
FAIL_STATUSES = (400, 401, 403, 404, 408, 413, 429, 500, 502, 503, 504, 529)


class ConfigError(ValueError):
    """A config change or a fail spec that the server refuses (answered with 400)."""


@dataclass(frozen=True, slots=True)
class FailSpec:
    """Answer `status` instead of completing; `times=None` means for ever."""

    status: int
    times: int | None = None
    # Seconds; sent as `Retry-After` on 429/503/529 only (what real servers do).
    retry_after: float | None = None
    # Only requests for these models fail (empty: every model), to test fallback models.
    models: tuple[str, ...] = ()

    def applies_to(self, model: str) -> bool:
        return not self.models or model in self.models

    @classmethod
    def parse(cls, raw: Any) -> FailSpec:
        if not isinstance(raw, Mapping):
            raise ConfigError("fail must be an object like {\"status\": 429, \"times\": 2}")
        unknown = set(raw) - {"status", "times", "retry_after", "models"}
        if unknown:
            raise ConfigError(f"fail: unknown keys {sorted(unknown)}")
        status = raw.get("status")
        if status not in FAIL_STATUSES:
            raise ConfigError(f"fail.status must be one of {FAIL_STATUSES}")
        times = raw.get("times")
        if times is not None and (not _is_int(times) or times < 0):
            raise ConfigError("fail.times must be a non-negative integer or omitted")
        retry_after = raw.get("retry_after")
        if retry_after is not None and (not _is_number(retry_after) or retry_after < 0):
            raise ConfigError("fail.retry_after must be a non-negative number")
        models = raw.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise ConfigError("fail.models must be a list of model names")
        return cls(status=status, times=times, retry_after=retry_after, models=tuple(models))

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "times": self.times, "retry_after": self.retry_after,
                "models": list(self.models)}


@dataclass(frozen=True, slots=True)
class FakeConfig:
    """Defaults for every request; a `fake: {...}` directive overrides them per request."""

    # Delay from receiving a request to its first content chunk, then between chunks.
    ttft_ms: float = 0.0
    gap_ms: float = 0.0
    # Text tokens streamed when the request has no `tokens`/`reply` directive.
    tokens: int = 8
    # Reasoning tokens streamed before the text when the request does not say.
    reasoning: int = 0
    # Characters per chunk when streaming an exact `reply` or reasoning text.
    chunk: int = 4
    reasoning_field: str = "reasoning_content"
    # When set, completion and model requests must carry this key (Bearer or x-api-key).
    required_api_key: str | None = None
    # Server-wide fault for benchmarks: the next `times` completion requests fail.
    fail: FailSpec | None = None
    # How many request bodies GET /_fake/requests keeps.
    keep_requests: int = 50
    models: tuple[str, ...] = DEFAULT_MODELS

    def updated(self, changes: Mapping[str, Any]) -> FakeConfig:
        """Return a copy with `changes` applied (JSON field names); raise ConfigError if invalid."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ConfigError(f"unknown config keys {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, value in changes.items():
            values[name] = _check_field(name, value)
        return dataclasses.replace(self, **values)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["fail"] = self.fail.to_json() if self.fail else None
        data["models"] = list(self.models)
        # The key itself is a secret even in a fake: say only whether one is required.
        data["required_api_key"] = "<set>" if self.required_api_key else None
        return data


def _check_field(name: str, value: Any) -> Any:
    if name in ("ttft_ms", "gap_ms"):
        if not _is_number(value) or value < 0:
            raise ConfigError(f"{name} must be a non-negative number")
        return float(value)
    if name in ("tokens", "reasoning", "keep_requests"):
        if not _is_int(value) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer")
        return value
    if name == "chunk":
        if not _is_int(value) or value < 1:
            raise ConfigError("chunk must be a positive integer")
        return value
    if name == "reasoning_field":
        if value not in REASONING_FIELDS:
            raise ConfigError(f"reasoning_field must be one of {REASONING_FIELDS}")
        return value
    if name == "required_api_key":
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError("required_api_key must be a non-empty string or null")
        return value
    if name == "fail":
        if value is None or isinstance(value, FailSpec):
            return value
        return FailSpec.parse(value)
    if name == "models":
        if not isinstance(value, list | tuple) or not value or not all(
            isinstance(m, str) for m in value
        ):
            raise ConfigError("models must be a non-empty list of strings")
        return tuple(value)
    raise ConfigError(f"unknown config key {name!r}")  # pragma: no cover - guarded by caller


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
