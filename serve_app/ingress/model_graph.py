"""Run the model graph one request needs: every node once, each as soon as its inputs are ready, in parallel.

The plan is the requested models plus every upstream they need (``registry.graph.order``). A backbone that
eight heads need runs once; a node nobody requested runs without an event of its own. Downstream nodes get
their upstream's ``NodeResult.handle`` (an object-store reference under Ray), never a copy made by the ingress.
A failed upstream fails each of its dependents with a message naming it; cancelling the caller cancels every
node still queued or running.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from models.base import InputSpec
from serve_app.observability.metrics import Metrics
from serve_app.registry import ModelEntry
from serve_app.registry.graph import order
from serve_app.runners.base import ModelRunner, NodeResult

log = logging.getLogger("mirstream.stream")


class UpstreamFailed(Exception):
    """A node could not run because a model it needs failed; carries the first failure's model and message."""

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(f"cannot run because the model it needs, {upstream}, failed: {message}")
        self.upstream = upstream
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Picklable with its two fields (batch mode hands failures on between Ray Data stages)."""
        return (UpstreamFailed, (self.upstream, self.message))


@dataclass(frozen=True)
class NodeOutcome:
    """How one node ended: ``outcome`` is completed | error | timeout | upstream_error | cancelled."""

    entry: ModelEntry
    requested: bool
    correlation_id: str
    outcome: str
    result: NodeResult | None = None
    error: str | None = None
    wall_s: float = 0.0


@dataclass
class GraphRun:
    """One request's graph: the plan, the shared audio per representation, and where outcomes go."""

    requested: tuple[ModelEntry, ...]
    by_key: Mapping[str, ModelEntry]
    runner: ModelRunner
    metrics: Metrics
    request_id: str
    audio_seconds: float
    report: Callable[[NodeOutcome], None]
    plan: tuple[ModelEntry, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.plan = order(self.requested, self.by_key)

    def representations(self) -> list[InputSpec]:
        """Every audio representation some node of the plan takes, each once."""
        return list(dict.fromkeys(e.input for e in self.plan if e.input is not None))

    async def run(self, shared: Mapping[InputSpec, Any]) -> None:
        """Start every node at once; each waits for its upstreams, then runs. Returns when all have ended."""
        wanted = {e.key for e in self.requested}
        tasks: dict[str, asyncio.Task[NodeResult]] = {}
        for entry in self.plan:  # upstreams first, so every node finds its upstreams' tasks
            upstream = {param: tasks[key] for param, key in entry.upstream.items()}
            node = self._node(entry, entry.key in wanted, upstream, shared)
            tasks[entry.key] = asyncio.create_task(node, name=f"model {entry.key}")
        try:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        finally:
            for task in tasks.values():
                task.cancel()

    async def _node(
        self,
        entry: ModelEntry,
        requested: bool,
        upstream: dict[str, asyncio.Task[NodeResult]],
        shared: Mapping[InputSpec, Any],
    ) -> NodeResult:
        """Wait for this node's inputs, run it, report it; raise so that its dependents learn of a failure."""
        correlation_id = str(uuid.uuid4())
        inputs: dict[str, Any] = {}
        if entry.audio_param is not None and entry.input is not None:
            inputs[entry.audio_param] = shared[entry.input]
        for param, task in upstream.items():
            try:
                inputs[param] = (await _quietly(task)).handle
            except asyncio.CancelledError:  # the request ended while this node waited for its upstreams
                self._finish(entry, requested, correlation_id, "cancelled", time.perf_counter())
                raise
            except UpstreamFailed as exc:
                self._finish(entry, requested, correlation_id, "upstream_error", time.perf_counter(), error=str(exc))
                raise UpstreamFailed(exc.upstream, exc.message) from None
            except _NodeFailed as exc:
                failure = UpstreamFailed(entry.upstream[param], exc.message)
                self._finish(entry, requested, correlation_id, "upstream_error", time.perf_counter(), str(failure))
                raise failure from None
        started = time.perf_counter()
        deadline = asyncio.timeout(entry.timeout_s)
        try:
            async with deadline:
                result = await self.runner.run(entry, inputs)
        except asyncio.CancelledError:
            self._finish(entry, requested, correlation_id, "cancelled", started)
            raise
        except Exception as exc:  # a model's failure becomes its error event; dependents learn of it
            if isinstance(exc, TimeoutError) and deadline.expired():
                message = (
                    f"{entry.key} did not finish within its {entry.timeout_s:g} s timeout (timeout_s in the registry)"
                )
                outcome = "timeout"
            else:
                message, outcome = self.runner.describe_error(exc), "error"
            self._finish(entry, requested, correlation_id, outcome, started, error=message)
            raise _NodeFailed(message) from None
        self._finish(entry, requested, correlation_id, "completed", started, result=result)
        return result

    def _finish(
        self,
        entry: ModelEntry,
        requested: bool,
        correlation_id: str,
        outcome: str,
        started: float,
        error: str | None = None,
        result: NodeResult | None = None,
    ) -> None:
        """Log and count one node's end, and hand it to ``report`` (which sends the event of a requested node)."""
        wall = time.perf_counter() - started
        compute_s = result.output.compute_s if result is not None else None
        self.metrics.inc("mirstream_model_runs_total", model=entry.key, outcome=outcome)
        if compute_s is not None:
            self.metrics.observe("mirstream_model_compute_seconds", compute_s, model=entry.key)
            self.metrics.observe("mirstream_model_queue_seconds", max(0.0, wall - compute_s), model=entry.key)
        fields = {
            "event": "model_run",
            "request_id": self.request_id,
            "correlation_id": correlation_id,
            "model": entry.key,
            "requested": requested,
            "outcome": outcome,
            "audio_seconds": round(self.audio_seconds, 3),
            "wall_s": round(wall, 4),
            "compute_s": None if compute_s is None else round(compute_s, 4),
            "queue_s": None if compute_s is None else round(max(0.0, wall - compute_s), 4),
        }
        if error is not None:
            fields["error"] = error
        log.info("model %s %s", entry.key, outcome, extra={"fields": fields})
        self.report(NodeOutcome(entry, requested, correlation_id, outcome, result, error, wall))


class _NodeFailed(Exception):
    """A node's own failure, as its dependents see it (the message its error event carried)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _quietly(task: Awaitable[NodeResult]) -> NodeResult:
    """Await an upstream task (shielded: one dependent going away must not cancel a shared upstream)."""
    return await asyncio.shield(task)
