"""Hosts one registry entry's analyzer inside a worker (Ray replica or pool process): load once, run serially."""

from __future__ import annotations

import threading
from typing import Any

from models.base import AnalyzerError, Audio, CancelFlag, cancellable
from serve_app.registry import ModelEntry


class AnalyzerHost:
    """Constructs the analyzer once; serialises calls (Essentia algorithms are stateful and hold the GIL)."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        self.analyzer = entry.load_class()(**entry.params)
        self._lock = threading.Lock()

    def run(self, audio: Audio, cancel: CancelFlag | None = None) -> dict[str, Any]:
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
            results = self.analyzer.analyze(audio)
        if not isinstance(results, dict):
            raise AnalyzerError(f"{self.entry.key} returned {type(results).__name__}, not a results object")
        return results
