"""How the stream reaches the models: one interface, two implementations (Ray Serve handles, process pool)."""

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


class ModelRunner(Protocol):
    """Runs registry entries on shared audio; the stream code is written against this alone."""

    def share(self, audio: Audio) -> Any:
        """Make one representation available to every model that needs it (Ray: ``ray.put`` once)."""

    async def run(self, entry: ModelEntry, shared: Any) -> ModelOutput:
        """Run one model; raise with a human-readable message on failure; honour cancellation."""

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
