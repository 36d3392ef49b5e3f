"""Errors in OpenAI's shape, so that its SDKs raise their own classes (BadRequestError for 400,
AuthenticationError for 401, RateLimitError for 429, InternalServerError for 5xx...):

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": null}}
"""

from __future__ import annotations

from agents.events import ProviderError
from agents.loop import RoundLimitReached
from agents.context_window import ContextTooLong
from conversations.hooks import TurnRefused

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
          404: "invalid_request_error", 405: "invalid_request_error",
          413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 param: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message,
                          "type": _TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


# The model server's failures, as the chat page words them (ProviderError.message), with the
# status a client can act on: its own request at fault (400), come back later (429, 503), or
# our upstream broken (502, 504). The upstream's 401/404 are our configuration's fault, not
# the client's: they are 502s, never the client's 401 or 404.
_PROVIDER_STATUS = {"rate_limited": 429, "server_error": 502, "connection": 502,
                    "timeout": 504, "auth": 502, "not_found": 502, "bad_request": 400,
                    "protocol": 502}


def turn_failure(failure: Exception | None, message: str) -> ApiError:
    """The ApiError for a turn that failed with `failure` (TurnRunner.failure) and `message`
    (the error the chat page shows)."""
    if isinstance(failure, ProviderError):
        status = _PROVIDER_STATUS.get(failure.kind, 502)
        if failure.kind == "server_error" and failure.status == 503:
            status = 503
        retry_after = failure.retry_after if status in (429, 503) else None
        if status == 429 and retry_after is None:
            retry_after = 1
        return ApiError(status, message, code=f"upstream_{failure.kind}",
                        retry_after=retry_after)
    if isinstance(failure, TurnRefused):
        # A limit with an end (a budget's period, a rate limit) is one to wait for.
        if failure.retry_after is not None:
            return ApiError(429, message, code="budget_exceeded",
                            retry_after=failure.retry_after)
        return ApiError(403, message, code="turn_refused")
    if isinstance(failure, RoundLimitReached):
        return ApiError(500, message, code="round_limit")
    if isinstance(failure, ContextTooLong):
        return ApiError(400, message, code="context_length_exceeded", param="messages")
    return ApiError(500, message or "The answer failed because of an error on our server.",
                    code="server_error")
