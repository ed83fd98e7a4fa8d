"""The HTTP surface (Starlette), identical in both modes: stream endpoint, model catalogue, health."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from serve_app.admission import Admission
from serve_app.config import Settings
from serve_app.registry import Registry
from serve_app.request import RequestError, parse_request
from serve_app.runner import ModelRunner
from serve_app.stream import analysis_events

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class _SlotStreamingResponse(StreamingResponse):
    """An SSE response that notices a client disconnect at once and always returns its admission slot.

    Starlette only watches for ``http.disconnect`` on old ASGI servers; on newer ones a vanished client
    is noticed at the next write (up to one keep-alive interval later) and the event generator is left
    for the garbage collector. Here the disconnect cancels the stream immediately and the generator is
    closed, which cancels the model calls still running for it.
    """

    def __init__(self, content: AsyncGenerator[str, None], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self._events = content
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:
                        pass  # the client went away mid-write
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            await self._events.aclose()
            self._release()


def _error(exc: RequestError) -> JSONResponse:
    """The contract's plain HTTP error: ``{"detail": ...}`` plus any headers (Retry-After, WWW-Authenticate)."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


def create_app(
    registry: Registry,
    runner: ModelRunner,
    settings: Settings,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
) -> Starlette:
    """Build the ASGI app around a model runner (Ray handles or a process pool)."""

    admission = Admission(settings)

    async def analysis_stream(request: Request) -> Response:
        """POST /v1/analysis/stream: admit (401/429/503), validate (400/404/413), then stream the events."""
        try:
            admission.check_rate(admission.identify(request))
            admission.acquire_stream()
        except RequestError as exc:
            return _error(exc)
        try:
            job = await parse_request(request, registry, settings)
        except BaseException as exc:
            admission.release_stream()
            if isinstance(exc, RequestError):
                return _error(exc)
            raise
        return _SlotStreamingResponse(analysis_events(job, runner, settings), admission.release_stream)

    async def list_models(request: Request) -> Response:
        """GET /v1/models: the registry as served, with schemas and licences."""
        try:
            admission.identify(request)
        except RequestError as exc:
            return _error(exc)
        return JSONResponse({"models": [entry.describe() for entry in registry.entries]})

    async def healthz(request: Request) -> Response:
        """GET /healthz: 200 only when every deployment of the served catalogue is ready."""
        ready, states = await runner.health()
        body = {"status": "ok" if ready else "unavailable", "deployments": states}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Every HTTP error has a JSON ``detail`` body, as the contract says."""
        assert isinstance(exc, HTTPException)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    routes = [
        Route("/v1/analysis/stream", analysis_stream, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
