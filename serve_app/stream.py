"""The analysis stream shared by both modes: started → fetch+decode once → fan out → events as they finish → finished.

A producer task does the work and queues framed events; the response generator drains the queue and
sends a keep-alive comment whenever nothing happened for ``keepalive_seconds``. When the client goes
away the generator is closed, which cancels the producer and through it every model call in flight.
Each request ends with one structured log record (and each model run with its own), plus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from models.base import InputSpec
from serve_app import events
from serve_app.audio_source import audio_bytes
from serve_app.config import Settings
from serve_app.decode import AudioError, decode, representation
from serve_app.logs import loggable_url
from serve_app.metrics import Metrics
from serve_app.registry import ModelEntry
from serve_app.request import AnalysisJob
from serve_app.runner import ModelRunner

log = logging.getLogger("mirstream.stream")


@dataclass
class _Request:
    """What one request's log record and metrics say; filled in as the stream progresses."""

    job: AnalysisJob
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    started: float = field(default_factory=time.perf_counter)
    fields: dict[str, Any] = field(default_factory=dict)
    model_outcomes: list[str] = field(default_factory=list)


async def analysis_events(
    job: AnalysisJob, runner: ModelRunner, settings: Settings, metrics: Metrics
) -> AsyncIterator[str]:
    """Yield the SSE text of one analysis, keep-alive comments included."""
    total = len(job.models)
    req = _Request(job)
    outcome = "cancelled"
    yield events.sse(events.started(total))
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.create_task(_produce(req, runner, settings, metrics, queue))
    producer.add_done_callback(lambda _task: queue.put_nowait(None))
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
        if not producer.cancelled() and producer.exception() is not None:
            exc = producer.exception()
            outcome = "internal_error"
            log.error("request failed internally", exc_info=exc, extra={"fields": {"request_id": req.request_id}})
            yield events.sse({"status": "error", "error": f"internal server error: {type(exc).__name__}"})
        yield events.sse(events.finished(total))
    finally:
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
    """'completed' when every model completed, else 'model_errors'."""
    return "completed" if all(o == "completed" for o in req.model_outcomes) else "model_errors"


async def _produce(
    req: _Request, runner: ModelRunner, settings: Settings, metrics: Metrics, queue: asyncio.Queue[str | None]
) -> None:
    """Fetch and decode once, share each needed representation once, run all models concurrently."""
    job = req.job
    req.fields["source"] = "url" if job.audio_url else "upload"
    if job.audio_url:
        req.fields["url"] = loggable_url(job.audio_url)
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
        shared: dict[InputSpec, object] = {}
        for spec in dict.fromkeys(entry.input for entry in job.models):
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
    )
    audio_seconds = decoded.duration
    del decoded
    await asyncio.gather(
        *(_run_model(e, shared[e.input], runner, metrics, queue, req, audio_seconds) for e in job.models)
    )


async def _run_model(
    entry: ModelEntry,
    shared: object,
    runner: ModelRunner,
    metrics: Metrics,
    queue: asyncio.Queue[str | None],
    req: _Request,
    audio_seconds: float,
) -> None:
    """Run one model and queue its completed/error event; its failure never touches the others."""
    correlation_id = str(uuid.uuid4())
    started = time.perf_counter()
    deadline = asyncio.timeout(entry.timeout_s)
    compute_s: float | None = None
    record: dict[str, Any] = {}
    try:
        async with deadline:
            output = await runner.run(entry, shared)
        compute_s = output.compute_s
        frame = events.sse(events.completed(entry, correlation_id, output.results))
        outcome = "completed"
    except asyncio.CancelledError:
        _log_run(entry, req, correlation_id, "cancelled", started, None, audio_seconds, {})
        metrics.inc("mirstream_model_runs_total", model=entry.key, outcome="cancelled")
        raise
    except Exception as exc:  # a model's failure (or unserialisable results) becomes its error event
        if isinstance(exc, TimeoutError) and deadline.expired():
            message = f"{entry.key} did not finish within its {entry.timeout_s:g} s timeout (timeout_s in the registry)"
            outcome = "timeout"
        else:
            message = runner.describe_error(exc)
            outcome = "error"
        frame = events.sse(events.model_error(entry, correlation_id, message))
        record["error"] = message
    wall = time.perf_counter() - started
    metrics.inc("mirstream_model_runs_total", model=entry.key, outcome=outcome)
    if compute_s is not None:
        metrics.observe("mirstream_model_compute_seconds", compute_s, model=entry.key)
        metrics.observe("mirstream_model_queue_seconds", max(0.0, wall - compute_s), model=entry.key)
    req.model_outcomes.append(outcome)
    _log_run(entry, req, correlation_id, outcome, started, compute_s, audio_seconds, record)
    queue.put_nowait(frame)


def _log_run(
    entry: ModelEntry,
    req: _Request,
    correlation_id: str,
    outcome: str,
    started: float,
    compute_s: float | None,
    audio_seconds: float,
    extra: dict[str, Any],
) -> None:
    """One structured record per model run; queue_s is the wall time not spent computing."""
    wall = time.perf_counter() - started
    fields = {
        "event": "model_run",
        "request_id": req.request_id,
        "correlation_id": correlation_id,
        "model": entry.key,
        "outcome": outcome,
        "audio_seconds": round(audio_seconds, 3),
        "wall_s": round(wall, 4),
        "compute_s": None if compute_s is None else round(compute_s, 4),
        "queue_s": None if compute_s is None else round(max(0.0, wall - compute_s), 4),
        **extra,
    }
    log.info("model %s %s", entry.key, outcome, extra={"fields": fields})
