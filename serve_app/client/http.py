"""The synchronous and asyncio clients: one analysis stream per call, HTTP errors as exceptions, safe retries.

Built on httpx and httpx-sse (no hand-written SSE parser). Retries happen only where nothing was analysed yet:
a refused/timed-out connection and ``503`` before any event arrived (waiting ``Retry-After``, bounded). A
stream cut after its first event is never re-sent.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from httpx_sse import EventSource, SSEError, aconnect_sse, connect_sse

from serve_app.client.errors import (
    MirstreamConnectionError,
    MirstreamError,
    MirstreamProtocolError,
    ServerBusyError,
    http_error,
)
from serve_app.client.events import Analysis, Event, Finished, ModelInfo, decode_event
from serve_app.contract.events import MODELS_PATH, STREAM_PATH

DEFAULT_URL = "http://127.0.0.1:8000"
Source = str | os.PathLike[str] | bytes


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
                        last = decode_event(sse.data)
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
                        last = decode_event(sse.data)
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
