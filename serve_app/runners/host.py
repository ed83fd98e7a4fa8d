"""Hosts one registry entry's analyzer inside a worker (Ray replica or pool process): load once, run serially.

The host is where an entry's declarations are enforced: weight files are checked against their SHA-256 before
the analyzer loads, and every run gets the audio representation and duration the class declared, so analyzers
never re-check them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from models import placement
from models.base import AnalyzerError, Audio, CancelFlag, Cancelled, cancellable, require_duration
from serve_app.registry import ModelEntry
from serve_app.registry.availability import verify_weights
from serve_app.runners.base import ModelOutput


def _assigned_gpus() -> tuple[str, ...]:
    """GPU ids Ray gave this replica (none outside Ray: the in-process mode is CPU only)."""
    import sys

    if "ray" not in sys.modules:  # pool workers never import Ray just to learn they have no GPU
        return ()
    import ray

    return tuple(str(g) for g in ray.get_gpu_ids()) if ray.is_initialized() else ()


class AnalyzerHost:
    """Constructs the analyzer once; serialises calls (Essentia algorithms are stateful and hold the GIL)."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        verify_weights(entry)
        placement.configure(entry.resources.num_cpus, _assigned_gpus())
        self.analyzer = entry.load_class()(**entry.params)
        self._lock = threading.Lock()

    def run(self, inputs: Mapping[str, Any], cancel: CancelFlag | None = None) -> ModelOutput:
        """Analyse one request's inputs (audio and/or upstream outputs) after checking the audio is as declared.

        ``cancel`` is polled by the analyzer's ``check_cancelled()`` (also before starting, since a
        queued run may have been cancelled while it waited for the lock).
        """
        kwargs = self.arguments(inputs)
        with self._lock, cancellable(cancel):
            self.analyzer.check_cancelled()
            started = time.perf_counter()
            results = self.analyzer.analyze(**kwargs)
            compute_s = time.perf_counter() - started
        return ModelOutput(results=self._checked(results), compute_s=compute_s)

    def arguments(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """``analyze``'s keyword arguments: the checked audio, and each upstream's results."""
        kwargs: dict[str, Any] = {}
        for param, value in inputs.items():
            if param == self.entry.audio_param:
                self.check_audio(value)
                kwargs[param] = value
            elif param in self.entry.upstream:
                kwargs[param] = value.results if isinstance(value, ModelOutput) else value
            else:
                raise AnalyzerError(f"{self.entry.key} takes no input {param!r}")
        absent = {self.entry.audio_param, *self.entry.upstream} - {None, *kwargs}
        if absent:
            raise AnalyzerError(f"{self.entry.key} was called without its input(s) {sorted(absent)}")
        return kwargs

    def run_batch(self, audios: list[Audio], cancels: list[CancelFlag]) -> list[ModelOutput | BaseException]:
        """Analyse several requests' tracks in one ``analyze_batch`` call; each gets its own outcome.

        A track with the wrong representation, an analyzer error or an already-cancelled request fails alone.
        The batch stops early only when every request in it has gone away. ``compute_s`` is the batch's time.
        """
        outcomes: list[ModelOutput | BaseException | None] = [None] * len(audios)
        todo: list[int] = []
        for i, (audio, cancel) in enumerate(zip(audios, cancels, strict=True)):
            try:
                self.check_audio(audio)
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

    def check_audio(self, audio: Any) -> None:
        """Refuse audio that is not the representation, or shorter than the minimum, the class declared."""
        declared = self.entry.audio
        if declared is None or not isinstance(audio, Audio):
            raise AnalyzerError(f"{self.entry.key} expects decoded audio, got {type(audio).__name__}")
        if declared.sample_rate is not None and audio.sample_rate != declared.sample_rate:
            raise AnalyzerError(f"{self.entry.key} expects {declared.sample_rate} Hz audio, got {audio.sample_rate} Hz")
        if declared.channels == "mono" and audio.samples.ndim != 1:
            raise AnalyzerError(f"{self.entry.key} expects mono audio")
        require_duration(audio, declared.min_seconds, self.entry.key)

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
