"""Hosts one registry entry's analyzer inside a worker (Ray replica or pool process): load once, run serially."""

from __future__ import annotations

import threading
import time

from models import placement
from models.base import AnalyzerError, Audio, CancelFlag, cancellable
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
        want = self.entry.input.sample_rate
        if want is not None and audio.sample_rate != want:
            raise AnalyzerError(f"{self.entry.key} expects {want} Hz audio, got {audio.sample_rate} Hz")
        if self.entry.input.channels == "mono" and audio.samples.ndim != 1:
            raise AnalyzerError(f"{self.entry.key} expects mono audio")
        with self._lock, cancellable(cancel):
            self.analyzer.check_cancelled()
            started = time.perf_counter()
            results = self.analyzer.analyze(audio)
            compute_s = time.perf_counter() - started
        if not isinstance(results, dict):
            raise AnalyzerError(f"{self.entry.key} returned {type(results).__name__}, not a results object")
        return ModelOutput(results=results, compute_s=compute_s)
