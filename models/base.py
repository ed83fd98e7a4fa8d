"""The analyzer contract: what audio an analyzer receives and what it must return.

An analyzer is a small class: ``__init__`` takes the registry entry's ``params`` (and loads anything
heavy, once per replica); ``analyze`` maps one ``Audio`` to a JSON-able dict matching the entry's
output schema. Everything else (decoding, resampling, fan-out, SSE) is generic server code.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

Channels = Literal["mono", "original"]


@dataclass(frozen=True)
class InputSpec:
    """The audio representation an analyzer needs: a sample rate (None = the file's own) and channels."""

    sample_rate: int | None
    channels: Channels


@dataclass(frozen=True)
class AudioInput:
    """An analyzer input fed with the decoded track, in one representation, at least ``min_seconds`` long.

    The host checks the representation and the duration before ``analyze`` runs, so analyzers never do.
    """

    sample_rate: int | None
    channels: Channels = "mono"
    min_seconds: float = 0.0

    @property
    def spec(self) -> InputSpec:
        """The representation the ingress builds (once per request, shared by every analyzer that needs it)."""
        return InputSpec(self.sample_rate, self.channels)


@dataclass(frozen=True)
class ModelInput:
    """An analyzer input fed with another registry entry's ``results`` (the model graph).

    The registry binds it to an upstream ``name:version``; ``requires`` names result fields the upstream's
    output schema must declare (checked at load). The value arrives as the upstream's results dict, numpy
    arrays included (the object store hands them over without a copy where it can).
    """

    requires: tuple[str, ...] = ()


Input = AudioInput | ModelInput


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


def require_duration(audio: Audio, minimum_s: float, what: str) -> None:
    """Refuse a track shorter than ``minimum_s`` with a message that says what needs how much."""
    if audio.duration < minimum_s:
        raise AnalyzerError(f"audio is {audio.duration:.2f} s long; {what} needs at least {minimum_s:g} s")


class Cancelled(Exception):
    """The request this run serves went away (client disconnect or model timeout): stop working."""


class CancelFlag(Protocol):
    """Anything with ``is_set()``: a threading.Event in a Ray replica, a manager Event proxy in a pool worker."""

    def is_set(self) -> bool: ...


_cancel_flag: contextvars.ContextVar[CancelFlag | None] = contextvars.ContextVar("mirstream_cancel", default=None)


@contextmanager
def cancellable(flag: CancelFlag | None) -> Iterator[None]:
    """Make ``flag`` the one that ``Analyzer.check_cancelled`` consults during this run (set by the host)."""
    token = _cancel_flag.set(flag)
    try:
        yield
    finally:
        _cancel_flag.reset(token)


class Analyzer:
    """Base class for every analyzer named in model_registry.yaml.

    ``inputs`` declares, once, what ``analyze`` receives: each keyword is an ``AudioInput`` (the decoded track)
    or a ``ModelInput`` (another entry's results). Most analyzers take one ``audio`` argument.
    """

    inputs: ClassVar[Mapping[str, Input]] = {}  # every concrete analyzer declares its own

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Compute this model's results for one track (keyword arguments as declared in ``inputs``)."""
        raise NotImplementedError

    def analyze_batch(self, audios: list[Audio]) -> list[dict[str, Any] | Exception]:
        """Results for several tracks at once (Serve's dynamic batching): one results dict or exception per track.

        A failing track must not fail the others, so errors are returned in its place, not raised; only
        Cancelled (every request in the batch went away) propagates. This default runs ``analyze`` in turn;
        network models override it to push all tracks' frames through one forward pass.
        """
        outcomes: list[dict[str, Any] | Exception] = []
        for audio in audios:
            try:
                outcomes.append(self.analyze(audio))
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - handed back as this track's outcome
                outcomes.append(exc)
        return outcomes

    @classmethod
    def check_weight(cls, role: str, path: Path) -> None:
        """Check a downloaded weight file's format before it is installed, when no SHA-256 is recorded to check
        instead (e.g. a graph holds the nodes its metadata names): raise ValueError saying what is wrong."""

    def check_cancelled(self) -> None:
        """Raise Cancelled if the request went away; multi-stage analyzers call this between stages.

        A single Essentia call cannot be interrupted, so cancellation is cooperative: work stops at the
        next check instead of running to the end for nobody.
        """
        flag = _cancel_flag.get()
        if flag is not None and flag.is_set():
            raise Cancelled("the request was cancelled")


class BatchAnalyzer(Analyzer):
    """An analyzer whose natural unit is a batch (one forward pass over many tracks): it implements
    ``analyze_batch``, and ``analyze`` is a batch of one."""

    def analyze(self, audio: Audio) -> dict[str, Any]:
        """Results for one track, raising its error as ``analyze`` callers expect."""
        outcome = self.analyze_batch([audio])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
