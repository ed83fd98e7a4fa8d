"""Test-only analyzers (registered by tests/fixture_registry.yaml): a failing one and a slow one."""

from __future__ import annotations

import time
from typing import Any

from models.base import Analyzer, Audio


class FailingAnalyzer(Analyzer):
    """Always raises, to prove one model's failure becomes its own error event."""

    def __init__(self, message: str = "fixture model failed on purpose") -> None:
        self.message = message

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Raise a plain ValueError with a known message."""
        raise ValueError(self.message)


class SlowAnalyzer(Analyzer):
    """Sleeps, then reports how many runs this instance has done (to see whether cancelled work ran)."""

    def __init__(self, seconds: float = 1.5) -> None:
        self.seconds = seconds
        self.runs = 0

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Sleep ``seconds`` and count the run."""
        time.sleep(self.seconds)
        self.runs += 1
        return {"runs": self.runs, "duration": audio.duration}
