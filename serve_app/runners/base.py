"""How the stream reaches the models: one interface, two implementations (Ray Serve handles, process pools)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from models.base import Audio
from serve_app.registry import ModelEntry


@dataclass(frozen=True)
class ModelOutput:
    """A model's results and the seconds it spent computing them (the rest of the wait is queue/transfer)."""

    results: dict[str, Any]
    compute_s: float


@dataclass(frozen=True)
class NodeResult:
    """A finished run: the output the ingress reads, and ``handle``, what downstream models are given
    (Ray: the object-store reference of the output, so heads read it without a copy through the ingress)."""

    output: ModelOutput
    handle: Any


class ModelRunner(Protocol):
    """Runs registry entries; the stream and the model graph are written against this alone."""

    def share(self, audio: Audio) -> Any:
        """Make one audio representation available to every model that needs it (Ray: ``ray.put`` once)."""

    async def run(self, entry: ModelEntry, inputs: dict[str, Any]) -> NodeResult:
        """Run one model on ``inputs`` (argument → a ``share`` handle or an upstream ``NodeResult.handle``).

        Raise with a human-readable message on failure; honour cancellation (the caller's task being cancelled).
        """

    def describe_error(self, exc: BaseException) -> str:
        """The client-facing message for a failed run (the original exception's, no traceback)."""

    async def health(self) -> tuple[bool, dict[str, str]]:
        """(all ready?, state per deployment) for /healthz."""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes (Ray colours its tracebacks and actor names)."""
    return _ANSI.sub("", text)


def plain_message(exc: BaseException) -> str:
    """An exception's own message without colour codes, or its type name when it has none."""
    text = strip_ansi(str(exc)).strip()
    return text if text else type(exc).__name__
