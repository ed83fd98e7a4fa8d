"""Hosts one registry entry's analyzer inside a worker (Ray replica or pool process): load once, run serially."""

from __future__ import annotations

import threading
import time
from typing import Any

from models import placement
from models.base import AnalyzerError, Audio, CancelFlag, Cancelled, cancellable
from serve_app.registry import ModelEntry
from serve_app.runner import ModelOutput


def _assigned_gpus() -> tuple[str, ...]:
    """GPU ids Ray gave this replica (none outside Ray: the in-process mode is CPU only)."""
    try:
        import ray

        if ray.is_initialized():
            return tuple(str(g) for g in ray.get_gpu_ids())
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return ()


class AnalyzerHost:
    """Constructs the analyzer once; serialises calls (Essentia algorithms are stateful and hold the GIL)."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        placement.configure(entry.resources.num_cpus, _assigned_gpus())
        self.analyzer = entry.load_class()(**entry.params)
        self._lock = threading.Lock()

    def run(self, audio: Audio, cancel: CancelFlag | None = None) -> ModelOutput:
        """Analyse one track after checking it is the representation this entry declared.

        ``cancel`` is polled by the analyzer's ``check_cancelled()`` (also before starting, since a
        queued run may have been cancelled while it waited for the lock).
        """
        self._check_input(audio)
        with self._lock, cancellable(cancel):
            self.analyzer.check_cancelled()
            started = time.perf_counter()
            results = self.analyzer.analyze(audio)
            compute_s = time.perf_counter() - started
        return ModelOutput(results=self._checked(results), compute_s=compute_s)

    def run_batch(self, audios: list[Audio], cancels: list[CancelFlag]) -> list[ModelOutput | BaseException]:
        """Analyse several requests' tracks in one ``analyze_batch`` call; each gets its own outcome.

        A track with the wrong representation, an analyzer error or an already-cancelled request fails alone.
        The batch stops early only when every request in it has gone away. ``compute_s`` is the batch's time.
        """
        outcomes: list[ModelOutput | BaseException | None] = [None] * len(audios)
        todo: list[int] = []
        for i, (audio, cancel) in enumerate(zip(audios, cancels, strict=True)):
            try:
                self._check_input(audio)
            except AnalyzerError as exc:
                outcomes[i] = exc
                continue
            if cancel.is_set():
                outcomes[i] = Cancelled("the request was cancelled")
            else:
                todo.append(i)
        if todo:
            batch_cancel = AllSet([cancels[i] for i in todo])
            try:
                with self._lock, cancellable(batch_cancel):
                    self.analyzer.check_cancelled()
                    started = time.perf_counter()
                    results = self.analyzer.analyze_batch([audios[i] for i in todo])
                    compute_s = time.perf_counter() - started
                if len(results) != len(todo):
                    raise AnalyzerError(f"{self.entry.key} returned {len(results)} results for {len(todo)} tracks")
            except Exception as exc:  # noqa: BLE001 - the whole call failed: every track in it gets the error
                results, compute_s = [exc] * len(todo), 0.0
            for i, result in zip(todo, results, strict=True):
                try:
                    if isinstance(result, BaseException):
                        raise result
                    outcomes[i] = ModelOutput(results=self._checked(result), compute_s=compute_s)
                except Exception as exc:  # noqa: BLE001 - this track's own outcome
                    outcomes[i] = exc
        return [o if o is not None else AnalyzerError("no outcome") for o in outcomes]

    def _check_input(self, audio: Audio) -> None:
        """Refuse audio that is not the representation this entry declared."""
        want = self.entry.input.sample_rate
        if want is not None and audio.sample_rate != want:
            raise AnalyzerError(f"{self.entry.key} expects {want} Hz audio, got {audio.sample_rate} Hz")
        if self.entry.input.channels == "mono" and audio.samples.ndim != 1:
            raise AnalyzerError(f"{self.entry.key} expects mono audio")

    def _checked(self, results: object) -> dict[str, Any]:
        """The analyzer's results, if they are a results object."""
        if not isinstance(results, dict):
            raise AnalyzerError(f"{self.entry.key} returned {type(results).__name__}, not a results object")
        return results


class AllSet:
    """A cancel flag for a batch: set once every request in it is cancelled (one leaving must not stop the rest)."""

    def __init__(self, flags: list[CancelFlag]) -> None:
        self._flags = flags

    def is_set(self) -> bool:
        """True when no request in the batch is still waiting for its result."""
        return all(f.is_set() for f in self._flags)
