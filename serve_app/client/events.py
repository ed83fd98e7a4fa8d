"""The contract's events as typed Python objects, and the catalogue entries of ``GET /v1/models``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from serve_app.client.errors import MirstreamProtocolError
from serve_app.contract.events import COMPLETED, ERROR, FINISHED, STARTED


@dataclass(frozen=True)
class Started:
    """``{"status": "started", "total_models": N}``: sent at once, before download/decode."""

    status: ClassVar[str] = STARTED
    total_models: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Completed:
    """A model's results: {"status": "completed", "result": {model_name, model_version, correlation_id, results}}."""

    status: ClassVar[str] = COMPLETED
    model_name: str
    model_version: str
    correlation_id: str
    results: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str:
        """``name:version``."""
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class ModelError:
    """An ``error`` event. For one model, ``model_name``/``model_version``/``correlation_id`` are set."""

    status: ClassVar[str] = ERROR
    error: str
    model_name: str | None = None
    model_version: str | None = None
    correlation_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> str | None:
        """``name:version``, or None for the audio error."""
        return None if self.model_name is None else f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True)
class AudioError(ModelError):
    """The single ``error`` event (no model fields) sent when the audio could not be downloaded or decoded."""


@dataclass(frozen=True)
class Finished:
    """``{"status": "finished", "total_models": N}``: always the last event."""

    status: ClassVar[str] = FINISHED
    total_models: int
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


Event = Started | Completed | ModelError | Finished


@dataclass
class Analysis:
    """Every event of one stream collected: what ``Client.analyze`` returns.

    ``completed`` is keyed by ``name:version``, so two versions of one model requested together both stay.
    """

    total_models: int = 0
    completed: dict[str, Completed] = field(default_factory=dict)  # by "name:version"
    errors: list[ModelError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model completed."""
        return not self.errors

    def results(self, model: str) -> dict[str, Any]:
        """The ``results`` of ``name:version``, or of ``name`` when one version of it completed (any spelling:
        case and ``-``/``_`` do not matter). KeyError if it did not complete or the bare name is ambiguous."""
        if model in self.completed:
            return self.completed[model].results
        name, _, version = model.partition(":")
        found = [
            c
            for c in self.completed.values()
            if _same_name(c.model_name, name) and (not version or c.model_version == version)
        ]
        if len(found) == 1:
            return found[0].results
        if found:
            raise KeyError(f"{model!r} completed in versions {sorted(c.model for c in found)}; ask for name:version")
        raise KeyError(f"{model!r} did not complete (completed: {sorted(self.completed)})")

    def add(self, event: Event) -> None:
        """Fold one event in."""
        if isinstance(event, Started | Finished):
            self.total_models = event.total_models
        elif isinstance(event, Completed):
            self.completed[event.model] = event
        else:
            self.errors.append(event)


def _same_name(a: str, b: str) -> bool:
    """Model names match case-insensitively with '-' and '_' equivalent, as the server matches them."""
    return a.strip().lower().replace("-", "_") == b.strip().lower().replace("-", "_")


@dataclass(frozen=True)
class ModelInfo:
    """One catalogue entry of ``GET /v1/models`` (``raw`` keeps every field the server sent)."""

    name: str
    version: str
    default: bool
    description: str
    available: bool
    unavailable_reason: str | None
    license: dict[str, Any]
    input: dict[str, Any]
    inputs: dict[str, Any]
    output_schema: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def model(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelInfo:
        """Build from one element of the ``models`` list; tolerant of fields added later."""
        reason = data.get("unavailable_reason") or data.get("reason")
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            default=bool(data.get("default", False)),
            description=str(data.get("description", "")),
            available=bool(data.get("available", True)),
            unavailable_reason=None if reason is None else str(reason),
            license=dict(data.get("license") or {}),
            input=dict(data.get("input") or {}),
            inputs=dict(data.get("inputs") or {}),
            output_schema=dict(data.get("output_schema") or {}),
            raw=data,
        )


def parse_event(data: dict[str, Any]) -> Event:
    """One decoded ``data:`` payload as its typed event; MirstreamProtocolError if it fits no contract shape."""
    try:
        status = data["status"]
        if status == STARTED:
            return Started(total_models=int(data["total_models"]), raw=data)
        if status == FINISHED:
            return Finished(total_models=int(data["total_models"]), raw=data)
        if status == COMPLETED:
            r = data["result"]
            return Completed(
                model_name=str(r["model_name"]),
                model_version=str(r["model_version"]),
                correlation_id=str(r.get("correlation_id", "")),
                results=dict(r["results"]),
                raw=data,
            )
        if status == ERROR:
            if data.get("model_name") is None:
                return AudioError(error=str(data["error"]), raw=data)
            return ModelError(
                error=str(data["error"]),
                model_name=str(data["model_name"]),
                model_version=str(data["model_version"]),
                correlation_id=data.get("correlation_id"),
                raw=data,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MirstreamProtocolError(f"malformed event {data!r}: {exc!r}") from None
    raise MirstreamProtocolError(f"unknown event status {data.get('status')!r} in {data!r}")


def decode_event(data: str) -> Event:
    """JSON-decode one SSE message's data and type it."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise MirstreamProtocolError(f"event data is not JSON: {data[:200]!r}") from None
    if not isinstance(payload, dict):
        raise MirstreamProtocolError(f"event data is not a JSON object: {data[:200]!r}")
    return parse_event(payload)
