"""The Starlette app: OpenAI and Anthropic endpoints plus the /_fake control endpoints.

Endpoints
- GET  /v1/models              model list (OpenAI format; Anthropic format when the request
                               carries `anthropic-version` or `x-api-key`)
- POST /v1/chat/completions    OpenAI Chat Completions, streaming or not
- POST /v1/messages            Anthropic Messages, streaming or not
- GET  /_fake/stats            counters (see `fakellm.state.Stats`)
- POST /_fake/reset            zero counters, recent requests, retry attempts, cache prefixes;
                               body {"config": true} also restores the startup config
- GET|POST /_fake/config       read / partially update the server defaults (`FakeConfig`)
- GET  /_fake/requests         the last `keep_requests` completion requests (path, headers,
                               body), oldest first; `?limit=N` for the newest N
- GET  /health                 "ok"

Order of checks for a completion request: count it, record it (API keys redacted), auth (401:
a required key that is missing or wrong), validation (400: missing model/messages, Anthropic's
max_tokens and anthropic-version header, a malformed `fake:` directive), injected failure, then
the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fakellm import anthropic_wire, openai_wire
from fakellm.config import ConfigError, FailSpec, FakeConfig
from fakellm.scenario import (
    Conversation,
    DirectiveError,
    Plan,
    build_plan,
    parse_directive,
    read_anthropic,
    read_openai,
    scenario_key,
)
from fakellm.state import FakeState
from fakellm.streaming import DelayedBody, PacedStream, Pacing, install_log_filter

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
]
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Recorded as present but not kept: keys are secrets even in a test (DESIGN.md, security model).
_SECRET_HEADERS = frozenset({"authorization", "x-api-key"})
# Real servers send Retry-After only with these.
_RETRY_AFTER_STATUSES = (429, 503, 529)

ErrorBody = Callable[[int, str], dict[str, Any]]


def create_app(config: FakeConfig | None = None) -> Starlette:
    """Build the app; its state lives in `app.state.fake` (a `FakeState`, loop-thread only)."""
    install_log_filter()
    app = Starlette(
        routes=[
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/_fake/stats", fake_stats, methods=["GET"]),
            Route("/_fake/reset", fake_reset, methods=["POST"]),
            Route("/_fake/config", fake_config, methods=["GET", "POST"]),
            Route("/_fake/requests", fake_requests, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.fake = FakeState(config or FakeConfig())
    return app


def _state(request: Request) -> FakeState:
    return request.app.state.fake  # type: ignore[no-any-return]


# --- Shared request handling --------------------------------------------------------------------


def _error(
    state: FakeState, error_body: ErrorBody, status: int, message: str, retry_after: float | None = None
) -> Response:
    state.count_status(status)
    headers = {}
    if retry_after is not None and status in _RETRY_AFTER_STATUSES:
        headers["retry-after"] = _format_seconds(retry_after)
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _failure(state: FakeState, error_body: ErrorBody, spec: FailSpec) -> Response:
    message = f"fake failure {spec.status} (injected)"
    return _error(state, error_body, spec.status, message, spec.retry_after)


async def _read_body(request: Request, state: FakeState) -> Any:
    """Count and record the request; return its parsed JSON (None if it is not JSON)."""
    raw = await request.body()
    state.counters.requests += 1
    try:
        body: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    state.record(
        {
            "path": request.url.path,
            "headers": {
                name: "<redacted>" if name in _SECRET_HEADERS else value
                for name, value in request.headers.items()
            },
            "body": body if body is not None else raw.decode("utf-8", "replace"),
            "at": time.time(),
        }
    )
    return body


def _key_matches(config: FakeConfig, presented: str | None) -> bool:
    return config.required_api_key is None or presented == config.required_api_key


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _validate_messages(body: Any, required: tuple[str, ...]) -> str | None:
    """Return an error message for a body a real server would reject, else None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    for name in required:
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: must be a non-empty string"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return "messages: must be a non-empty list of message objects"
    return None


def _pacing(plan: Plan, started: float) -> Pacing:
    return Pacing(
        started=started,
        ttft_s=plan.ttft_s,
        gap_s=plan.gap_s,
        drop_after=plan.drop_after,
        hang=plan.hang,
        hang_after=plan.hang_after,
    )


def _max_tokens(body: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _plan(
    state: FakeState, body: Mapping[str, Any], conversation: Conversation, max_tokens: int | None
) -> tuple[Plan, FailSpec | None]:
    directive = parse_directive(conversation.last_user_text)
    text = conversation.last_user_text
    key = scenario_key(model=body["model"], directive=directive, last_user_text=text)
    spec = directive.fail if directive.fail and directive.fail.applies_to(body["model"]) else None
    failure = state.next_failure(key, spec)
    plan = build_plan(
        directive=directive,
        conversation=conversation,
        config=state.config,
        key=key,
        max_tokens=max_tokens,
    )
    return plan, failure


# --- OpenAI -------------------------------------------------------------------------------------


async def chat_completions(request: Request) -> Any:
    started = asyncio.get_running_loop().time()
    state = _state(request)
    body = await _read_body(request, state)
    err = openai_wire.error_body
    presented = _bearer(request)
    if not _key_matches(state.config, presented):
        message = "Incorrect API key provided." if presented else "You didn't provide an API key."
        return _error(state, err, 401, message)
    problem = _validate_messages(body, ("model", "messages"))
    if problem:
        return _error(state, err, 400, problem)
    try:
        max_tokens = _max_tokens(body, "max_completion_tokens", "max_tokens")
        plan, failure = _plan(state, body, read_openai(body["messages"]), max_tokens)
    except DirectiveError as exc:
        return _error(state, err, 400, str(exc))
    if failure is not None:
        return _failure(state, err, failure)

    prompt_tokens = openai_wire.prompt_tokens(body)
    model = body["model"]
    if body.get("stream") is True:
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        rendered = openai_wire.render_stream(
            plan, model=model, include_usage=include_usage, prompt_tokens=prompt_tokens
        )
        return _stream(state, plan, started, head=b"", frames=rendered.frames,
                       tail=rendered.tail)
    return _body(state, plan, started,
                 openai_wire.render_body(plan, model=model, prompt_tokens=prompt_tokens))


def _stream(state: FakeState, plan: Plan, started: float, *, head: bytes, frames, tail) -> Any:
    return PacedStream(state=state, headers=_SSE_HEADERS, head=head, frames=frames, tail=tail,
                       pacing=_pacing(plan, started))


def _body(state: FakeState, plan: Plan, started: float, body: bytes) -> Any:
    return DelayedBody(
        state=state,
        headers=_JSON_HEADERS,
        body=body,
        tokens=len(plan.reasoning) + len(plan.text),
        frame_count=_frame_count(plan),
        pacing=_pacing(plan, started),
    )


def _frame_count(plan: Plan) -> int:
    return len(plan.reasoning) + len(plan.text) + sum(len(c.argument_pieces) + 1 for c in plan.calls)


# --- Anthropic ----------------------------------------------------------------------------------


async def messages(request: Request) -> Any:
    started = asyncio.get_running_loop().time()
    state = _state(request)
    body = await _read_body(request, state)
    err = anthropic_wire.error_body
    presented = request.headers.get("x-api-key")
    if not _key_matches(state.config, presented):
        message = "invalid x-api-key" if presented else "x-api-key header is required"
        return _error(state, err, 401, message)
    problem = _validate_messages(body, ("model", "messages", "max_tokens"))
    if not problem and "anthropic-version" not in request.headers:
        problem = "anthropic-version: header is required"
    if problem:
        return _error(state, err, 400, problem)
    try:
        max_tokens = _max_tokens(body, "max_tokens")
        plan, failure = _plan(state, body, read_anthropic(body["messages"]), max_tokens)
    except DirectiveError as exc:
        return _error(state, err, 400, str(exc))
    if failure is not None:
        return _failure(state, err, failure)

    prompt = anthropic_wire.prompt_usage(body, state)
    model = body["model"]
    if body.get("stream") is True:
        rendered = anthropic_wire.render_stream(plan, model=model, prompt=prompt)
        return _stream(state, plan, started, head=rendered.head, frames=rendered.frames,
                       tail=rendered.tail)
    return _body(state, plan, started,
                 anthropic_wire.render_body(plan, model=model, prompt=prompt))


# --- Models and control endpoints ---------------------------------------------------------------


async def list_models(request: Request) -> Response:
    state = _state(request)
    anthropic = "anthropic-version" in request.headers or "x-api-key" in request.headers
    presented = request.headers.get("x-api-key") if anthropic else _bearer(request)
    if not _key_matches(state.config, presented):
        err = anthropic_wire.error_body if anthropic else openai_wire.error_body
        return JSONResponse(err(401, "invalid API key"), status_code=401)
    ids = state.config.models
    if anthropic:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in ids
        ]
        return JSONResponse({"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]})
    created = 1735689600
    data = [{"id": m, "object": "model", "created": created, "owned_by": "fakellm"} for m in ids]
    return JSONResponse({"object": "list", "data": data})


async def fake_stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats().to_json())


async def fake_reset(request: Request) -> Response:
    try:
        options = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        options = {}
    _state(request).reset(config=bool(isinstance(options, dict) and options.get("config")))
    return JSONResponse({"ok": True})


async def fake_config(request: Request) -> Response:
    state = _state(request)
    if request.method == "POST":
        try:
            changes = json.loads(await request.body())
            if not isinstance(changes, dict):
                raise ConfigError("config changes must be a JSON object")
            state.set_config(state.config.updated(changes))
        except (ConfigError, json.JSONDecodeError) as exc:
            return JSONResponse({"error": {"message": str(exc)}}, status_code=400)
    return JSONResponse(state.config.to_json())


async def fake_requests(request: Request) -> Response:
    entries = list(_state(request).recent)
    limit = request.query_params.get("limit")
    if limit and limit.isdigit():
        entries = entries[-int(limit):] if int(limit) else []
    return JSONResponse(entries)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")
