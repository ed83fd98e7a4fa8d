"""The analysis stream shared by both modes: started → fetch + decode once → model graph → events → finished.

A producer task does the work and queues framed events; the response generator drains the queue and
sends a keep-alive comment whenever nothing happened for ``keepalive_seconds`` (so a model whose replica is
still starting keeps the stream open). When the client goes away the generator is closed, which cancels the
producer and through it every model still queued or running. Each request ends with one structured log
record (and each model run with its own, ``ingress.model_graph``), plus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from serve_app.config import Settings
from serve_app.contract import events
from serve_app.ingress.audio_source import audio_bytes
from serve_app.ingress.decode import AudioError, decode, representation
from serve_app.ingress.model_graph import GraphRun, NodeOutcome
from serve_app.ingress.request import AnalysisJob
from serve_app.observability.logs import loggable_url
from serve_app.observability.metrics import Metrics
from serve_app.registry import Registry
from serve_app.runners.base import ModelRunner

log = logging.getLogger("mirstream.stream")


@dataclass
class _Request:
    """What one request's log record and metrics say; filled in as the stream progresses."""

    job: AnalysisJob
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started: float = field(default_factory=time.perf_counter)
    fields: dict[str, Any] = field(default_factory=dict)
    model_outcomes: list[str] = field(default_factory=list)
    abort_reason: str | None = None  # set when the server ends the stream (drain deadline at shutdown)


OpenStreams = dict[int, Callable[[str], None]]  # registry of running streams' abort functions (Admission's)


async def analysis_events(
    job: AnalysisJob,
    registry: Registry,
    runner: ModelRunner,
    settings: Settings,
    metrics: Metrics,
    open_streams: OpenStreams | None = None,
) -> AsyncIterator[str]:
    """Yield the SSE text of one analysis, keep-alive comments included.

    While it runs the stream is listed in ``open_streams`` with a function that ends it cleanly (the drain at
    shutdown): every model still running gets an error event with the given reason, then ``finished``.
    """
    total = len(job.models)
    req = _Request(job)
    outcome = "cancelled"
    yield events.sse(events.started(total))
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.create_task(_produce(req, registry, runner, settings, metrics, queue))
    producer.add_done_callback(lambda _task: queue.put_nowait(None))

    def abort(reason: str) -> None:
        req.abort_reason = reason
        producer.cancel()

    if open_streams is not None:
        open_streams[id(req)] = abort
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), settings.keepalive_seconds)
            except TimeoutError:
                yield events.KEEPALIVE
                continue
            if item is None:
                break
            yield item
        outcome = req.fields.pop("outcome", None) or _models_outcome(req)
        if req.abort_reason is not None:
            outcome = "aborted"
        elif not producer.cancelled() and producer.exception() is not None:
            exc = producer.exception()
            outcome = "internal_error"
            log.error("request failed internally", exc_info=exc, extra={"fields": {"request_id": req.request_id}})
            yield events.sse({"status": "error", "error": f"internal server error: {type(exc).__name__}"})
        yield events.sse(events.finished(total))
    finally:
        if open_streams is not None:
            open_streams.pop(id(req), None)
        if not producer.done():
            producer.cancel()
        metrics.inc("mirstream_requests_total", outcome=outcome)
        record = {
            "event": "request",
            "request_id": req.request_id,
            "models": [e.key for e in job.models],
            "outcome": outcome,
            "total_s": round(time.perf_counter() - req.started, 4),
            **req.fields,
        }
        log.info("request %s", outcome, extra={"fields": record})


def _models_outcome(req: _Request) -> str:
    """'completed' when every requested model completed, else 'model_errors'."""
    return "completed" if all(o == "completed" for o in req.model_outcomes) else "model_errors"


async def _produce(
    req: _Request,
    registry: Registry,
    runner: ModelRunner,
    settings: Settings,
    metrics: Metrics,
    queue: asyncio.Queue[str | None],
) -> None:
    """Fetch and decode once, share each representation the graph needs once, run the graph."""
    job = req.job
    req.fields["source"] = "url" if job.audio_url else "upload"
    if job.audio_url:
        req.fields["url"] = loggable_url(job.audio_url)

    def report(node: NodeOutcome) -> None:
        """Queue the event of a requested model (nodes nobody asked for only log)."""
        if not node.requested:
            return
        req.model_outcomes.append(node.outcome)
        name, version = node.entry.name, node.entry.version
        if node.result is not None:
            payload = events.completed(name, version, node.correlation_id, node.result.output.results)
        elif node.outcome == "cancelled" and req.abort_reason is None:
            return  # the client went away: nobody reads this stream any more
        else:
            message = req.abort_reason if node.outcome == "cancelled" else node.error
            payload = events.model_error(name, version, node.correlation_id, message or node.outcome)
        queue.put_nowait(events.sse(payload))

    graph = GraphRun(job.models, registry.by_key(), runner, metrics, req.request_id, 0.0, report)
    t0 = time.perf_counter()
    try:
        data = await audio_bytes(job, settings)
        if job.audio_url:
            metrics.inc("mirstream_url_bytes_total", len(data))
        req.fields["bytes"] = len(data)
        req.fields["fetch_s"] = round(time.perf_counter() - t0, 4)
        t1 = time.perf_counter()
        decoded = await asyncio.to_thread(decode, data, settings.max_audio_seconds)
        del data
        shared = {}
        for spec in graph.representations():
            shared[spec] = runner.share(await asyncio.to_thread(representation, decoded, spec))
    except AudioError as exc:
        req.fields.update(outcome="audio_error", error=str(exc))
        queue.put_nowait(events.sse(events.audio_error(str(exc))))
        return
    decode_s = time.perf_counter() - t1
    metrics.observe("mirstream_decode_seconds", decode_s, container=decoded.container)
    metrics.inc("mirstream_audio_seconds_total", decoded.duration)
    req.fields.update(
        container=decoded.container,
        codec=decoded.codec,
        channels=int(decoded.samples.shape[0]),
        sample_rate=decoded.sample_rate,
        audio_seconds=round(decoded.duration, 3),
        decode_s=round(decode_s, 4),
        graph=[e.key for e in graph.plan],
    )
    graph.audio_seconds = decoded.duration
    del decoded
    await graph.run(shared)
