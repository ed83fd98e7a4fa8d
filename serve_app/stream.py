"""The analysis stream shared by both modes: started → fetch+decode once → fan out → events as they finish → finished.

A producer task does the work and queues framed events; the response generator drains the queue and
sends a keep-alive comment whenever nothing happened for ``keepalive_seconds``. When the client goes
away the generator is cancelled, which cancels the producer and through it every model call in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

from models.base import InputSpec
from serve_app import events
from serve_app.audio_source import audio_bytes
from serve_app.config import Settings
from serve_app.decode import AudioError, decode, representation
from serve_app.registry import ModelEntry
from serve_app.request import AnalysisJob
from serve_app.runner import ModelRunner

log = logging.getLogger("mirstream.stream")


async def analysis_events(job: AnalysisJob, runner: ModelRunner, settings: Settings) -> AsyncIterator[str]:
    """Yield the SSE text of one analysis, keep-alive comments included."""
    total = len(job.models)
    request_id = uuid.uuid4().hex[:12]
    yield events.sse(events.started(total))
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.create_task(_produce(job, runner, settings, queue, request_id))
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
        if not producer.cancelled() and producer.exception() is not None:
            exc = producer.exception()
            log.error("request %s failed internally", request_id, exc_info=exc)
            yield events.sse({"status": "error", "error": f"internal server error: {type(exc).__name__}"})
        yield events.sse(events.finished(total))
    finally:
        if not producer.done():
            log.info("request %s: client went away, cancelling its model runs", request_id)
            producer.cancel()


async def _produce(
    job: AnalysisJob, runner: ModelRunner, settings: Settings, queue: asyncio.Queue[str | None], request_id: str
) -> None:
    """Fetch and decode once, share each needed representation once, run all models concurrently."""
    t0 = time.perf_counter()
    try:
        data = await audio_bytes(job, settings)
        decoded = await asyncio.to_thread(decode, data, settings.max_audio_seconds)
    except AudioError as exc:
        log.info("request %s: audio rejected: %s", request_id, exc)
        queue.put_nowait(events.sse(events.audio_error(str(exc))))
        return
    del data
    shared: dict[InputSpec, object] = {}
    for spec in dict.fromkeys(entry.input for entry in job.models):
        shared[spec] = runner.share(await asyncio.to_thread(representation, decoded, spec))
    log.info(
        "request %s: decoded %s/%s %.1f s %d ch %d Hz in %.3f s",
        request_id,
        decoded.container,
        decoded.codec,
        decoded.duration,
        decoded.samples.shape[0],
        decoded.sample_rate,
        time.perf_counter() - t0,
    )
    del decoded
    await asyncio.gather(*(_run_model(e, shared[e.input], runner, queue, request_id) for e in job.models))


async def _run_model(
    entry: ModelEntry, shared: object, runner: ModelRunner, queue: asyncio.Queue[str | None], request_id: str
) -> None:
    """Run one model and queue its completed/error event; its failure never touches the others."""
    correlation_id = str(uuid.uuid4())
    started = time.perf_counter()
    deadline = asyncio.timeout(entry.timeout_s)
    try:
        async with deadline:
            results = await runner.run(entry, shared)
        frame = events.sse(events.completed(entry, correlation_id, results))
        outcome = "completed"
    except asyncio.CancelledError:
        log.info("request %s model %s correlation_id=%s cancelled", request_id, entry.key, correlation_id)
        raise
    except Exception as exc:  # a model's failure (or unserialisable results) becomes its error event
        if isinstance(exc, TimeoutError) and deadline.expired():
            message = f"{entry.key} did not finish within its {entry.timeout_s:g} s timeout (timeout_s in the registry)"
        else:
            message = runner.describe_error(exc)
        frame = events.sse(events.model_error(entry, correlation_id, message))
        outcome = f"error: {message}"
    log.info(
        "request %s model %s correlation_id=%s outcome=%s seconds=%.3f",
        request_id,
        entry.key,
        correlation_id,
        outcome,
        time.perf_counter() - started,
    )
    queue.put_nowait(frame)
