"""What the client raises: HTTP refusals with the server's ``detail``, connection and protocol failures."""

from __future__ import annotations

import email.utils
import json
import time

import httpx


class MirstreamError(Exception):
    """Base class of every error this client raises."""


class MirstreamHTTPError(MirstreamError):
    """The server refused the request: ``status`` and its JSON ``detail`` message."""

    def __init__(self, status: int, detail: str, headers: httpx.Headers | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers if headers is not None else httpx.Headers()
        self.retry_after = retry_after_seconds(self.headers.get("retry-after"))


class AuthenticationError(MirstreamHTTPError):
    """401: missing or wrong API key."""


class RateLimitError(MirstreamHTTPError):
    """429: this key/address sent too many requests; ``retry_after`` says when to try again."""


class ServerBusyError(MirstreamHTTPError):
    """503: every stream slot is taken (still so after the allowed retries)."""


class MirstreamConnectionError(MirstreamError):
    """The server could not be reached, or the connection broke mid-stream."""


class MirstreamProtocolError(MirstreamError):
    """The server answered something that is not the contract's event stream."""


_HTTP_ERRORS: dict[int, type[MirstreamHTTPError]] = {
    401: AuthenticationError,
    429: RateLimitError,
    503: ServerBusyError,
}


def http_error(status: int, body: bytes, headers: httpx.Headers) -> MirstreamHTTPError:
    """The exception for a non-200 answer, carrying the server's ``detail`` (or the raw body from a proxy)."""
    try:
        data = json.loads(body)
        detail = str(data["detail"]) if isinstance(data, dict) and "detail" in data else body.decode(errors="replace")
    except ValueError:
        detail = body.decode(errors="replace").strip() or httpx.codes.get_reason_phrase(status)
    return _HTTP_ERRORS.get(status, MirstreamHTTPError)(status, detail, headers)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
