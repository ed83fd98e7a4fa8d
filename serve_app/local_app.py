"""In-process mode without Ray: the same ingress and stream code, models run in spawn-based process pools.

Like Ray Serve's deployments, each registry entry gets its own pool (up to ``max_replicas`` worker
processes), so a crashing model takes down only its own workers. Processes, not threads, because
Essentia holds the GIL; ``spawn`` because forking after TensorFlow or torch initialised hangs the child.
Used by ``serve --local``, the fast tests and one-shot ``mirstream analyze``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.managers import SyncManager
from typing import Any

from starlette.applications import Starlette

from models.base import Audio, CancelFlag
from serve_app.analyzer_host import AnalyzerHost
from serve_app.config import Settings
from serve_app.ingress import create_app
from serve_app.metrics import PrometheusMetrics
from serve_app.registry import ModelEntry, Registry
from serve_app.runner import ModelOutput, plain_message
from serve_app.weights import resolve_availability

_SPAWN = multiprocessing.get_context("spawn")
_hosts: dict[str, AnalyzerHost] = {}  # per worker process: each analyzer is built once, on first use


def _host(entry: ModelEntry) -> AnalyzerHost:
    """This worker's analyzer for ``entry``, built on first use."""
    if entry.key not in _hosts:
        _hosts[entry.key] = AnalyzerHost(entry)
    return _hosts[entry.key]


def _load_in_worker(entry: ModelEntry) -> str:
    """Warm-up task: construct the analyzer (fails fast on a broken model)."""
    _host(entry)
    return entry.key


def _run_in_worker(entry: ModelEntry, audio: Audio, cancel: CancelFlag) -> ModelOutput:
    """Pool task: analyse one representation, polling ``cancel`` (a manager Event proxy)."""
    return _host(entry).run(audio, cancel)


class _ModelPool:
    """One entry's worker processes plus a semaphore that keeps waiting work cancellable.

    ProcessPoolExecutor marks queued calls as running once they enter its call queue, where cancel()
    no longer works; holding them in the semaphore instead keeps a disconnect able to drop them.
    """

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.workers = max(1, entry.autoscaling.max_replicas)
        self._lock = threading.Lock()
        self._executor = self._new_executor()
        self._slots: asyncio.Semaphore | None = None

    def _new_executor(self) -> ProcessPoolExecutor:
        """Fresh spawned workers."""
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=_SPAWN)

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Submit, replacing the executor first if a dead worker broke it."""
        with self._lock:
            try:
                return self._executor.submit(fn, *args)
            except BrokenProcessPool:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
                return self._executor.submit(fn, *args)

    def slots(self) -> asyncio.Semaphore:
        """One slot per worker, created on the running loop."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        return self._slots

    def close(self) -> None:
        """Stop the workers."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class ProcessPoolRunner:
    """ModelRunner over one process pool per registry entry."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._pools = {entry.key: _ModelPool(entry) for entry in registry.entries}
        self._states = {entry.key: "STARTING" for entry in registry.entries}
        self._manager: SyncManager | None = None
        self._manager_lock = threading.Lock()

    def _manager_process(self) -> SyncManager:
        """The one manager process that serves cancellation Events to the workers (started on first need)."""
        with self._manager_lock:
            if self._manager is None:
                self._manager = _SPAWN.Manager()
            return self._manager

    def _flag(self) -> Any:
        """A cancellation Event that a worker process can poll."""
        return self._manager_process().Event()

    def share(self, audio: Audio) -> Audio:
        """Nothing to share across processes up front: the array is pickled to the worker per call."""
        return audio

    async def run(self, entry: ModelEntry, shared: Audio) -> ModelOutput:
        """Run in the entry's pool; cancellation drops waiting work and flags running work to stop."""
        pool = self._pools[entry.key]
        async with pool.slots():
            flag = await asyncio.to_thread(self._flag)
            future = pool.submit(_run_in_worker, entry, shared, flag)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()
                flag.set()
                raise
            except BrokenProcessPool:
                raise RuntimeError(
                    f"the worker process running {entry.key} died (killed or crashed); it will be restarted"
                ) from None

    def describe_error(self, exc: BaseException) -> str:
        """The exception's own message (it crossed the process boundary intact)."""
        return plain_message(exc)

    async def warm_up(self) -> None:
        """Construct every analyzer once so /healthz only says ready when all models load."""

        async def load(entry: ModelEntry) -> None:
            try:
                await asyncio.wrap_future(self._pools[entry.key].submit(_load_in_worker, entry))
                self._states[entry.key] = "HEALTHY"
            except Exception as exc:  # a model that cannot load is reported, not fatal to the others
                self._states[entry.key] = f"UNHEALTHY: {plain_message(exc)}"

        await asyncio.to_thread(self._manager_process)
        await asyncio.gather(*(load(e) for e in self._registry.entries))

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Ready when every analyzer constructed."""
        return all(s == "HEALTHY" for s in self._states.values()), dict(self._states)

    def close(self) -> None:
        """Stop every pool and the manager."""
        for pool in self._pools.values():
            pool.close()
        if self._manager is not None:
            self._manager.shutdown()


def create_local_app(registry: Registry, settings: Settings) -> tuple[Starlette, ProcessPoolRunner]:
    """The in-process ASGI app; models warm up in the background at start-up, the pools close at shutdown.

    Entries whose weights are absent (or non-commercial while disabled) get no pool; they are listed as
    unavailable and refused by name (serve_app.weights.resolve_availability).
    """
    registry = resolve_availability(registry, settings)
    runner = ProcessPoolRunner(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warm = asyncio.create_task(runner.warm_up())
        try:
            yield
        finally:
            warm.cancel()
            runner.close()

    metrics = PrometheusMetrics()
    app = create_app(registry, runner, settings, metrics, exposition=metrics.exposition, lifespan=lifespan)
    return app, runner
