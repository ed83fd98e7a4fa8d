"""The analyzer contract: what audio an analyzer receives and what it must return.

An analyzer is a small class: ``__init__`` takes the registry entry's ``params`` (and loads anything
heavy, once per replica); ``analyze`` maps one ``Audio`` to a JSON-able dict matching the entry's
output schema. Everything else (decoding, resampling, fan-out, SSE) is generic server code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Channels = Literal["mono", "original"]


@dataclass(frozen=True)
class InputSpec:
    """The audio representation an analyzer needs: a sample rate (None = the file's own) and channels."""

    sample_rate: int | None
    channels: Channels


@dataclass(frozen=True)
class Audio:
    """Decoded float32 samples in [-1, 1]: shape (n,) when mono, (channels, n) when 'original'."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channel_count(self) -> int:
        """Number of channels (1 for a 1-D mono array)."""
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return float(self.samples.shape[-1]) / self.sample_rate


class AnalyzerError(Exception):
    """An analyzer cannot handle this audio; the message is shown to the client as-is."""


class Analyzer:
    """Base class for every analyzer named in model_registry.yaml."""

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Compute this model's results for one track."""
        raise NotImplementedError
