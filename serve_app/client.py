"""Python client for a mirstream server: typed SSE events, HTTP errors as exceptions, safe retries.

    from serve_app.client import Client

    with Client("http://127.0.0.1:8000") as client:
        for event in client.stream("track.mp3", models="key,bpm_degara"):
            print(event)

Built on httpx and httpx-sse (no hand-written SSE parser). ``AsyncClient`` is the same API with ``async for``.
Retries happen only where nothing was analysed yet: a refused/timed-out connection and ``503`` before any
event arrived (waiting ``Retry-After``, bounded). A stream cut after its first event is never re-sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError, aconnect_sse, connect_sse

__all__ = [
    "Analysis",
    "AsyncClient",
    "AudioError",
    "AuthenticationError",
    "Client",
    "Completed",
    "Event",
    "Finished",
    "MirstreamConnectionError",
    "MirstreamError",
    "MirstreamHTTPError",
    "MirstreamProtocolError",
    "ModelError",
    "ModelInfo",
    "RateLimitError",
    "ServerBusyError",
    "Started",
    "parse_event",
]

DEFAULT_URL = "http://127.0.0.1:8000"
STREAM_PATH = "/v1/analysis/stream"
MODELS_PATH = "/v1/models"

Source = str | os.PathLike[str] | bytes


# ---- events (the contract's four event shapes) ----------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """``{"status": "started", "total_models": N}``: sent at once, before download/decode."""

    status: ClassVar[str] = "started"
    total_models: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Completed:
    """A model's results: {"status": "completed", "result": {model_name, model_version, correlation_id, results}}."""

    status: ClassVar[str] = "completed"
    model_name: str
    model_version: str
    correlation_id: str
    results: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str:
        """``name:version``."""
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class ModelError:
    """An ``error`` event. For one model, ``model_name``/``model_version``/``correlation_id`` are set."""

    status: ClassVar[str] = "error"
    error: str
    model_name: str | None = None
    model_version: str | None = None
    correlation_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str | None:
        """``name:version``, or None for the audio error."""
        return None if self.model_name is None else f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class AudioError(ModelError):
    """The single ``error`` event (no model fields) sent when the audio could not be downloaded or decoded."""


@dataclass(frozen=True)
class Finished:
    """``{"status": "finished", "total_models": N}``: always the last event."""

    status: ClassVar[str] = "finished"
    total_models: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


Event = Started | Completed | ModelError | Finished


@dataclass
class Analysis:
    """Every event of one stream collected: what ``Client.analyze`` returns."""

    total_models: int = 0
    completed: dict[str, Completed] = field(default_factory=dict)  # by model_name
    errors: list[ModelError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model completed."""
        return not self.errors

    def results(self, model_name: str) -> dict[str, Any]:
        """The ``results`` object of one model (KeyError if it did not complete)."""
        return self.completed[model_name].results

    def add(self, event: Event) -> None:
        """Fold one event in."""
        if isinstance(event, Started | Finished):
            self.total_models = event.total_models
        elif isinstance(event, Completed):
            self.completed[event.model_name] = event
        else:
            self.errors.append(event)


@dataclass(frozen=True)
class ModelInfo:
    """One catalogue entry of ``GET /v1/models`` (``raw`` keeps every field the server sent)."""

    name: str
    version: str
    default: bool
    description: str
    available: bool
    unavailable_reason: str | None
    license: dict[str, Any]
    input: dict[str, Any]
    output_schema: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        """Build from one element of the ``models`` list; tolerant of fields added later."""
        reason = data.get("unavailable_reason") or data.get("reason")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            default=bool(data.get("default", False)),
            description=str(data.get("description", "")),
            available=bool(data.get("available", True)),
            unavailable_reason=None if reason is None else str(reason),
            license=dict(data.get("license") or {}),
            input=dict(data.get("input") or {}),
            output_schema=dict(data.get("output_schema") or {}),
            raw=data,
        )


# ---- exceptions -------------------------------------------------------------------------------------------


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


def parse_event(data: dict[str, Any]) -> Event:
    """One decoded ``data:`` payload as its typed event; MirstreamProtocolError if it fits no contract shape."""
    try:
        status = data["status"]
        if status == "started":
            return Started(total_models=int(data["total_models"]), raw=data)
        if status == "finished":
            return Finished(total_models=int(data["total_models"]), raw=data)
        if status == "completed":
            r = data["result"]
            return Completed(
                model_name=str(r["model_name"]),
                model_version=str(r["model_version"]),
                correlation_id=str(r.get("correlation_id", "")),
                results=dict(r["results"]),
                raw=data,
            )
        if status == "error":
            if data.get("model_name") is None:
                return AudioError(error=str(data["error"]), raw=data)
            return ModelError(
                error=str(data["error"]),
                model_name=str(data["model_name"]),
                model_version=str(data["model_version"]),
                correlation_id=data.get("correlation_id"),
                raw=data,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MirstreamProtocolError(f"malformed event {data!r}: {exc!r}") from None
    raise MirstreamProtocolError(f"unknown event status {data.get('status')!r} in {data!r}")


def _decode(sse: ServerSentEvent) -> Event:
    """JSON-decode one SSE message and type it."""
    try:
        data = json.loads(sse.data)
    except ValueError:
        raise MirstreamProtocolError(f"event data is not JSON: {sse.data[:200]!r}") from None
    if not isinstance(data, dict):
        raise MirstreamProtocolError(f"event data is not a JSON object: {sse.data[:200]!r}")
    return parse_event(data)


# ---- request building and the retry policy (shared by both clients) -------------------------------------


def _is_url(source: Source) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _models_param(models: str | Sequence[str]) -> str:
    """``"key,bpm_degara"`` or ``["key", "bpm_degara"]`` → the ``models`` query value."""
    return models if isinstance(models, str) else ",".join(models)


def _request_parts(source: Source, filename: str | None) -> tuple[dict[str, str], bytes | None]:
    """Headers and body for one source: URL → URL-encoded ``audio-url`` header; path/bytes → raw body."""
    if _is_url(source):
        assert isinstance(source, str)
        return {"audio-url": quote(source, safe="")}, None
    if isinstance(source, bytes | bytearray | memoryview):
        body = bytes(source)
    else:
        path = Path(source)
        body = path.read_bytes()
        filename = filename or path.name
    headers = {"filename": quote(filename, safe="")} if filename else {}
    return headers, body


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry the safe cases (connect failure; 503 before any event)."""

    max_retries: int = 3
    backoff_s: float = 0.5  # first wait after a connect error; doubles each time, with ±25 % jitter
    max_wait_s: float = 30.0  # a Retry-After longer than this is not waited for: the error is raised

    def delay(self, attempt: int, error: Exception) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up and raise ``error``."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, ServerBusyError):
            wait = error.retry_after if error.retry_after is not None else self.backoff_s * 2**attempt
        elif isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            wait = self.backoff_s * 2**attempt * random.uniform(0.75, 1.25)
        else:
            return None
        return wait if wait <= self.max_wait_s else None


def _default_url(url: str | None) -> str:
    return (url or os.environ.get("MIRSTREAM_URL") or DEFAULT_URL).rstrip("/")


def _auth_headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("MIRSTREAM_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """Default: 10 s to connect; 120 s without a byte is a dead stream (the server sends keep-alives every 15 s)."""
    if timeout is None:
        return httpx.Timeout(120.0, connect=10.0)
    return timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)


def _check_stream(source: EventSource) -> None:
    """Raise the right exception unless the response is the 200 event stream (body already read on error)."""
    response = source.response
    if response.status_code != 200:
        raise http_error(response.status_code, response.content, response.headers)
    kind = response.headers.get("content-type", "")
    if "text/event-stream" not in kind:
        raise MirstreamProtocolError(f"expected text/event-stream, got {kind!r}")


def _retry_wait(policy: RetryPolicy, exc: Exception, attempt: int, got_events: bool, url: str) -> float:
    """Seconds to wait before retrying after ``exc``; raises it (as the client's exception) when it is not safe.

    Only a refused/timed-out connection or a 503 before any event is retried: nothing was analysed yet.
    """
    wait = None if got_events else policy.delay(attempt, exc)
    if wait is not None:
        return wait
    if isinstance(exc, httpx.TransportError):
        raise _wrap_transport_error(exc, url, got_events) from exc
    raise exc


def _wrap_transport_error(exc: httpx.TransportError, url: str, got_events: bool) -> MirstreamError:
    """Connection problems as a client exception that says whether the stream had begun."""
    where = "after the stream had started (not retried)" if got_events else "before any event"
    return MirstreamConnectionError(f"connection to {url} failed {where}: {exc!r}")


class Client:
    """Synchronous client. ``url`` defaults to ``$MIRSTREAM_URL`` (else http://127.0.0.1:8000) and
    ``api_key`` to ``$MIRSTREAM_API_KEY``; ``transport`` is passed to httpx (tests, proxies, ASGI)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = _default_url(url)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.url, headers=_auth_headers(api_key), timeout=_timeout(timeout), transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def models(self) -> list[ModelInfo]:
        """The served catalogue (``GET /v1/models``)."""
        try:
            response = self._http.get(MODELS_PATH)
        except httpx.TransportError as exc:
            raise _wrap_transport_error(exc, self.url, False) from exc
        if response.status_code != 200:
            raise http_error(response.status_code, response.content, response.headers)
        return [ModelInfo.from_json(m) for m in response.json()["models"]]

    def stream(self, source: Source, models: str | Sequence[str], *, filename: str | None = None) -> Iterator[Event]:
        """Analyse a file path, an http(s) URL (fetched by the server) or bytes; yield each event as it arrives.

        Closing the iterator early (``break``) hangs up, which cancels the server's remaining work.
        """
        headers, body = _request_parts(source, filename)
        params = {"models": _models_param(models)}
        attempt = 0
        while True:
            got_events = False
            try:
                with connect_sse(self._http, "POST", STREAM_PATH, params=params, headers=headers, content=body) as es:
                    if es.response.status_code != 200:
                        es.response.read()
                    _check_stream(es)
                    last: Event | None = None
                    for sse in es.iter_sse():
                        last = _decode(sse)
                        got_events = True
                        yield last
                    if not isinstance(last, Finished):
                        raise MirstreamProtocolError("the stream ended before its 'finished' event")
                    return
            except (ServerBusyError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
                wait = _retry_wait(self.retry, exc, attempt, got_events, self.url)
            except httpx.TransportError as exc:
                raise _wrap_transport_error(exc, self.url, got_events) from exc
            except SSEError as exc:
                raise MirstreamProtocolError(str(exc)) from exc
            attempt += 1
            time.sleep(wait)

    def analyze(self, source: Source, models: str | Sequence[str], *, filename: str | None = None) -> Analysis:
        """Run one analysis to its end and return every result and error."""
        analysis = Analysis()
        for event in self.stream(source, models, filename=filename):
            analysis.add(event)
        return analysis


class AsyncClient:
    """The asyncio twin of ``Client`` (same arguments, ``await``/``async for``)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = _default_url(url)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_auth_headers(api_key), timeout=_timeout(timeout), transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def models(self) -> list[ModelInfo]:
        """The served catalogue (``GET /v1/models``)."""
        try:
            response = await self._http.get(MODELS_PATH)
        except httpx.TransportError as exc:
            raise _wrap_transport_error(exc, self.url, False) from exc
        if response.status_code != 200:
            raise http_error(response.status_code, response.content, response.headers)
        return [ModelInfo.from_json(m) for m in response.json()["models"]]

    async def stream(
        self, source: Source, models: str | Sequence[str], *, filename: str | None = None
    ) -> AsyncIterator[Event]:
        """Like ``Client.stream``; ``aclose()`` on the iterator (or leaving ``async for``) hangs up."""
        headers, body = _request_parts(source, filename)
        params = {"models": _models_param(models)}
        attempt = 0
        while True:
            got_events = False
            try:
                async with aconnect_sse(
                    self._http, "POST", STREAM_PATH, params=params, headers=headers, content=body
                ) as es:
                    if es.response.status_code != 200:
                        await es.response.aread()
                    _check_stream(es)
                    last: Event | None = None
                    async for sse in es.aiter_sse():
                        last = _decode(sse)
                        got_events = True
                        yield last
                    if not isinstance(last, Finished):
                        raise MirstreamProtocolError("the stream ended before its 'finished' event")
                    return
            except (ServerBusyError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
                wait = _retry_wait(self.retry, exc, attempt, got_events, self.url)
            except httpx.TransportError as exc:
                raise _wrap_transport_error(exc, self.url, got_events) from exc
            except SSEError as exc:
                raise MirstreamProtocolError(str(exc)) from exc
            attempt += 1
            await asyncio.sleep(wait)

    async def analyze(self, source: Source, models: str | Sequence[str], *, filename: str | None = None) -> Analysis:
        """Run one analysis to its end and return every result and error."""
        analysis = Analysis()
        async for event in self.stream(source, models, filename=filename):
            analysis.add(event)
        return analysis
