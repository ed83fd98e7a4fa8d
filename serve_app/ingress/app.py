"""The HTTP surface (Starlette), identical in both modes: stream endpoint, model catalogue, health."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from serve_app.config import Settings
from serve_app.contract.events import MODELS_PATH, STREAM_PATH
from serve_app.ingress.admission import Admission
from serve_app.ingress.openapi import build_openapi
from serve_app.ingress.request import RequestError, parse_request
from serve_app.ingress.stream import analysis_events
from serve_app.observability.metrics import Metrics
from serve_app.registry import Registry
from serve_app.runners.base import ModelRunner

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
WEB_DIR = Path(__file__).resolve().parent.parent / "web"  # the web page and /docs: static files, no build step
# The pages load only their own scripts and styles, and talk only to this server.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


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
    metrics: Metrics,
    exposition: Callable[[], bytes] | None = None,
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
    admission: Admission | None = None,
) -> Starlette:
    """Build the ASGI app around a model runner (Ray handles or a process pool).

    ``exposition`` renders Prometheus metrics for ``GET /metrics`` (in-process mode); in Ray mode it is
    None because Ray's metrics agent serves them on the metrics export port. ``admission`` is passed in when it
    must outlive the app (the Ray ingress rebuilds its app when a default version moves, and drains at shutdown).
    """
    admission = admission or Admission(settings)

    def release() -> None:
        admission.release_stream()
        metrics.set("mirstream_streams_in_flight", admission.in_flight)

    def refuse(exc: RequestError) -> JSONResponse:
        metrics.inc("mirstream_rejected_requests_total", status=str(exc.status))
        return _error(exc)

    async def analysis_stream(request: Request) -> Response:
        """POST /v1/analysis/stream: admit (401/429/503), validate (400/404/413), then stream the events."""
        try:
            admission.check_rate(admission.identify(request))
            admission.acquire_stream()
        except RequestError as exc:
            return refuse(exc)
        metrics.set("mirstream_streams_in_flight", admission.in_flight)
        try:
            job = await parse_request(request, registry, settings)
        except BaseException as exc:
            release()
            if isinstance(exc, RequestError):
                return refuse(exc)
            raise
        events = analysis_events(job, registry, runner, settings, metrics, admission.open_streams)
        return _SlotStreamingResponse(events, release)

    async def list_models(request: Request) -> Response:
        """GET /v1/models: the catalogue with schemas, licences and ``available`` (plus ``reason`` when not)."""
        try:
            admission.identify(request)
        except RequestError as exc:
            return refuse(exc)
        return JSONResponse({"models": registry.listing()})

    async def healthz(request: Request) -> Response:
        """GET /healthz (= /readyz): 200 only when every deployment of the served catalogue is ready."""
        ready, states = await runner.health()
        body = {"status": "ok" if ready else "unavailable", "deployments": states}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def livez(request: Request) -> Response:
        """GET /livez: the ingress process answers (restart it if not); says nothing about the models."""
        return JSONResponse({"status": "alive"})

    async def prometheus(request: Request) -> Response:
        """GET /metrics in the in-process mode; in Ray mode, where to scrape instead."""
        if exposition is None:
            port = f"port {settings.metrics_port}" if settings.metrics_port is not None else "the metrics port"
            detail = (
                f"in Ray mode Prometheus metrics (mirstream's, prefixed ray_, and Ray Serve's) are served by "
                f"Ray's metrics agent on {port} of each node (MIRSTREAM_METRICS_PORT)"
            )
            return JSONResponse({"detail": detail}, status_code=404)
        return Response(exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def http_error(request: Request, exc: Exception) -> Response:
        """Every HTTP error has a JSON ``detail`` body, as the contract says."""
        assert isinstance(exc, HTTPException)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    api_document = build_openapi(registry, settings)

    async def openapi(request: Request) -> Response:
        """GET /openapi.json: the OpenAPI 3.1 document, generated from the registry at start-up."""
        return JSONResponse(api_document)

    def page(name: str) -> Callable[[Request], Any]:
        async def serve(request: Request) -> Response:
            """GET / (the analysis page) and /docs (the API reference): static HTML from serve_app/web."""
            return FileResponse(WEB_DIR / name, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

        return serve

    routes = [
        Route("/", page("index.html"), methods=["GET"]),
        Route("/docs", page("docs.html"), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
        Route(STREAM_PATH, analysis_stream, methods=["POST"]),
        Route(MODELS_PATH, list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", healthz, methods=["GET"]),
        Route("/livez", livez, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error}, lifespan=lifespan)
