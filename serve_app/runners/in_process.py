"""In-process mode without Ray: the same ingress, stream and model graph; models run in spawn-based process pools.

Like Ray Serve's deployments, each registry entry gets its own pool (up to ``max_replicas`` worker
processes), so a crashing model takes down only its own workers. Processes, not threads, because
Essentia holds the GIL; ``spawn`` because forking after TensorFlow or torch initialised hangs the child.
Warm entries load at start-up; the others start on first use and their workers exit after
``MIRSTREAM_IDLE_SECONDS`` without work, as scale-to-zero does under Ray. Used by ``serve --local``, the fast
tests and one-shot ``mirstream analyze``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.managers import SyncManager
from typing import Any

from starlette.applications import Starlette

from models.base import Audio, CancelFlag
from serve_app.config import Settings
from serve_app.ingress.app import create_app
from serve_app.observability.metrics import PrometheusMetrics
from serve_app.registry import ModelEntry, Registry
from serve_app.registry.availability import resolve_availability
from serve_app.runners.base import ModelOutput, NodeResult, plain_message
from serve_app.runners.host import AnalyzerHost

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


def _run_in_worker(entry: ModelEntry, inputs: Mapping[str, Any], cancel: CancelFlag) -> ModelOutput:
    """Pool task: analyse one request's inputs, polling ``cancel`` (a manager Event proxy)."""
    return _host(entry).run(inputs, cancel)


class _ModelPool:
    """One entry's worker processes plus a semaphore that keeps waiting work cancellable.

    ProcessPoolExecutor marks queued calls as running once they enter its call queue, where cancel()
    no longer works; holding them in the semaphore instead keeps a disconnect able to drop them.
    """

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.workers = max(1, entry.autoscaling.max_replicas)
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self.busy = 0
        self.last_used = time.monotonic()

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Submit, starting workers first if there are none (cold, idle-stopped, or broken by a dead worker)."""
        with self._lock:
            self.last_used = time.monotonic()
            if self._executor is None:
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=_SPAWN)
            try:
                return self._executor.submit(fn, *args)
            except BrokenProcessPool:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=_SPAWN)
                return self._executor.submit(fn, *args)

    def slots(self) -> asyncio.Semaphore:
        """One slot per worker, created on the running loop."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        return self._slots

    @property
    def running(self) -> bool:
        """Whether worker processes exist (a cold or idle-stopped pool has none)."""
        return self._executor is not None

    def stop_if_idle(self, idle_s: float) -> bool:
        """Stop the workers of a cold entry that has had no work for ``idle_s`` seconds; True if it stopped."""
        with self._lock:
            if self._executor is None or self.busy or self.entry.warm:
                return False
            if time.monotonic() - self.last_used < idle_s:
                return False
            executor, self._executor = self._executor, None
        executor.shutdown(wait=False, cancel_futures=True)
        return True

    def close(self) -> None:
        """Stop the workers."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class ProcessPoolRunner:
    """ModelRunner over one process pool per registry entry."""

    def __init__(self, registry: Registry, idle_s: float = 300.0) -> None:
        self._registry = registry
        self._idle_s = idle_s
        self._pools = {entry.key: _ModelPool(entry) for entry in registry.entries}
        self._states = {entry.key: "STARTING" if entry.warm else "COLD" for entry in registry.entries}
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
        """Nothing to share across processes up front: the array is pickled to each worker that needs it."""
        return audio

    async def run(self, entry: ModelEntry, inputs: dict[str, Any]) -> NodeResult:
        """Run in the entry's pool; cancellation drops waiting work and flags running work to stop."""
        pool = self._pools[entry.key]
        async with pool.slots():
            flag = await asyncio.to_thread(self._flag)
            pool.busy += 1
            future = pool.submit(_run_in_worker, entry, inputs, flag)
            try:
                output = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()
                flag.set()
                raise
            except BrokenProcessPool:
                raise RuntimeError(
                    f"the worker process running {entry.key} died (killed or crashed); it will be restarted"
                ) from None
            finally:
                pool.busy -= 1
                pool.last_used = time.monotonic()
        if self._states[entry.key] == "COLD":
            self._states[entry.key] = "HEALTHY"
        return NodeResult(output=output, handle=output)

    def describe_error(self, exc: BaseException) -> str:
        """The exception's own message (it crossed the process boundary intact)."""
        return plain_message(exc)

    async def warm_up(self) -> None:
        """Construct every warm entry's analyzer once, so /healthz only says ready when they all load."""

        async def load(entry: ModelEntry) -> None:
            try:
                await asyncio.wrap_future(self._pools[entry.key].submit(_load_in_worker, entry))
                self._states[entry.key] = "HEALTHY"
            except Exception as exc:  # a model that cannot load is reported, not fatal to the others
                self._states[entry.key] = f"UNHEALTHY: {plain_message(exc)}"

        await asyncio.to_thread(self._manager_process)
        await asyncio.gather(*(load(e) for e in self._registry.entries if e.warm))

    async def reap_idle(self, every_s: float = 5.0) -> None:
        """Forever: stop the workers of cold entries idle for longer than the idle delay (scale to zero)."""
        while True:
            await asyncio.sleep(every_s)
            for key, pool in self._pools.items():
                if pool.stop_if_idle(self._idle_s):
                    self._states[key] = "COLD"

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Ready when every warm analyzer constructed; a cold entry counts as ready (it starts on demand)."""
        ok = all(s in ("HEALTHY", "COLD") for s in self._states.values())
        return ok, dict(self._states)

    def close(self) -> None:
        """Stop every pool and the manager."""
        for pool in self._pools.values():
            pool.close()
        if self._manager is not None:
            self._manager.shutdown()


def create_local_app(registry: Registry, settings: Settings) -> tuple[Starlette, ProcessPoolRunner]:
    """The in-process ASGI app; warm models load in the background at start-up, the pools close at shutdown.

    Entries whose weights are absent (or non-commercial while disabled) get no pool; they are listed as
    unavailable and refused by name (registry.availability.resolve_availability).
    """
    registry = resolve_availability(registry, settings)
    runner = ProcessPoolRunner(registry, settings.idle_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(runner.warm_up()), asyncio.create_task(runner.reap_idle())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            runner.close()

    metrics = PrometheusMetrics()
    app = create_app(registry, runner, settings, metrics, exposition=metrics.exposition, lifespan=lifespan)
    return app, runner
