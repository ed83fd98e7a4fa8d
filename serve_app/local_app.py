"""In-process mode without Ray: the same ingress and stream code, models run in a spawn-based process pool.

Processes, not threads, because Essentia holds the GIL; ``spawn`` because forking after TensorFlow or
torch initialised hangs the child. Used by the fast tests and one-shot ``mirstream analyze``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from starlette.applications import Starlette

from models.base import Audio
from serve_app.analyzer_host import AnalyzerHost
from serve_app.config import Settings
from serve_app.ingress import create_app
from serve_app.registry import ModelEntry, Registry
from serve_app.runner import plain_message

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


def _run_in_worker(entry: ModelEntry, audio: Audio) -> dict[str, Any]:
    """Pool task: analyse one representation."""
    return _host(entry).run(audio)


class ProcessPoolRunner:
    """ModelRunner over a ProcessPoolExecutor; a crashed worker gets an error event and a fresh pool."""

    def __init__(self, registry: Registry, workers: int) -> None:
        self._workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._states = {entry.key: "STARTING" for entry in registry.entries}
        self._registry = registry
        self._slots: asyncio.Semaphore | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        """A pool of spawned workers."""
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"))

    def _submit(self, fn: Any, *args: Any) -> Future[Any]:
        """Submit to the current pool, replacing it first if a dead worker broke it."""
        with self._lock:
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(fn, *args)

    def share(self, audio: Audio) -> Audio:
        """Nothing to share across processes up front: the array is pickled to the worker per call."""
        return audio

    async def run(self, entry: ModelEntry, shared: Audio) -> dict[str, Any]:
        """Run in a worker; work waits here (cancellable) until a worker is free, not in the pool's queue.

        ProcessPoolExecutor marks queued calls as running as soon as they enter its call queue, where
        cancel() no longer works; holding them in a semaphore keeps a disconnect able to drop them.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._workers)
        async with self._slots:
            future = self._submit(_run_in_worker, entry, shared)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()
                raise
            except BrokenProcessPool:
                raise RuntimeError(f"the worker process running {entry.key} died; it will be restarted") from None

    def describe_error(self, exc: BaseException) -> str:
        """The exception's own message (it crossed the process boundary intact)."""
        return plain_message(exc)

    async def warm_up(self) -> None:
        """Construct every analyzer once so /healthz only says ready when all models load."""

        async def load(entry: ModelEntry) -> None:
            try:
                await asyncio.wrap_future(self._submit(_load_in_worker, entry))
                self._states[entry.key] = "HEALTHY"
            except Exception as exc:  # a model that cannot load is reported, not fatal to the others
                self._states[entry.key] = f"UNHEALTHY: {plain_message(exc)}"

        await asyncio.gather(*(load(e) for e in self._registry.entries))

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Ready when every analyzer constructed."""
        return all(s == "HEALTHY" for s in self._states.values()), dict(self._states)

    def close(self) -> None:
        """Stop the workers."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def create_local_app(registry: Registry, settings: Settings) -> tuple[Starlette, ProcessPoolRunner]:
    """The in-process ASGI app; models warm up in the background at start-up, the pool closes at shutdown."""
    runner = ProcessPoolRunner(registry, settings.local_workers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        warm = asyncio.create_task(runner.warm_up())
        try:
            yield
        finally:
            warm.cancel()
            runner.close()

    return create_app(registry, runner, settings, lifespan=lifespan), runner
