"""The analysis stream's events: their payloads, their ``data: <json>`` framing and their JSON Schemas.

One definition of the contract's four event shapes (started, completed, error, finished), used by the server
to build them, by the OpenAPI document to describe them, by the client to parse them and by the tests of the
web page's parser. Pure Python: no numpy, no server imports.
"""

from __future__ import annotations

import json
import math
from typing import Any

STREAM_PATH = "/v1/analysis/stream"
MODELS_PATH = "/v1/models"
KEEPALIVE = ": keep-alive\n\n"
DECODE_ERROR_PREFIX = "Failed to download or decode audio: "
STARTED, COMPLETED, ERROR, FINISHED = "started", "completed", "error", "finished"


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays (anything with ``tolist``) converted, NaN/±inf become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sse(payload: dict[str, Any]) -> str:
    """Frame one event as a single ``data:`` line followed by a blank line."""
    return f"data: {json.dumps(payload, separators=(', ', ': '), allow_nan=False)}\n\n"


def started(total: int) -> dict[str, Any]:
    """First event, sent before any download or decoding."""
    return {"status": STARTED, "total_models": total}


def finished(total: int) -> dict[str, Any]:
    """Last event, always sent, also after errors."""
    return {"status": FINISHED, "total_models": total}


def completed(model_name: str, model_version: str, correlation_id: str, results: dict[str, Any]) -> dict[str, Any]:
    """One model's results."""
    return {
        "status": COMPLETED,
        "result": {
            "model_name": model_name,
            "model_version": model_version,
            "correlation_id": correlation_id,
            "results": jsonable(results),
        },
    }


def model_error(model_name: str, model_version: str, correlation_id: str, message: str) -> dict[str, Any]:
    """One model failed; the others still report."""
    return {
        "status": ERROR,
        "error": message,
        "model_name": model_name,
        "model_version": model_version,
        "correlation_id": correlation_id,
    }


def audio_error(reason: str) -> dict[str, Any]:
    """The single error sent instead of any model event when the audio cannot be had."""
    return {"status": ERROR, "error": DECODE_ERROR_PREFIX + reason}


def event_schemas(ref: str = "#/components/schemas/") -> dict[str, Any]:
    """JSON Schemas of the four events (``ref`` prefixes the cross-references, as OpenAPI components)."""
    return {
        "StartedEvent": {
            "type": "object",
            "description": "First event, sent at once (before any download or decoding).",
            "required": ["status", "total_models"],
            "properties": {"status": {"const": STARTED}, "total_models": {"type": "integer", "minimum": 1}},
        },
        "CompletedEvent": {
            "type": "object",
            "description": "One model finished; events arrive in the order the models finish.",
            "required": ["status", "result"],
            "properties": {"status": {"const": COMPLETED}, "result": {"$ref": ref + "ModelResult"}},
        },
        "ModelResult": {
            "type": "object",
            "required": ["model_name", "model_version", "correlation_id", "results"],
            "properties": {
                "model_name": {"type": "string", "description": "Canonical registry name"},
                "model_version": {"type": "string"},
                "correlation_id": {"type": "string", "format": "uuid", "description": "UUID4, also in the server logs"},
                "results": {"type": "object", "description": "Per model: see GET /v1/models (output_schema)"},
            },
        },
        "ErrorEvent": {
            "type": "object",
            "description": (
                "A model failed (model_name, model_version and correlation_id are set; the other models still "
                "report), or the audio could not be had: then it is the only event between started and finished, "
                f"without model fields, and its message starts with {DECODE_ERROR_PREFIX!r}."
            ),
            "required": ["status", "error"],
            "properties": {
                "status": {"const": ERROR},
                "error": {"type": "string", "description": "Human-readable message"},
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "correlation_id": {"type": "string", "format": "uuid"},
            },
        },
        "FinishedEvent": {
            "type": "object",
            "description": "Always the last event, also after errors.",
            "required": ["status", "total_models"],
            "properties": {"status": {"const": FINISHED}, "total_models": {"type": "integer", "minimum": 1}},
        },
        "AnalysisEvent": {
            "description": "The JSON of one SSE message (`data: <json>` then a blank line).",
            "oneOf": [{"$ref": ref + n} for n in ("StartedEvent", "CompletedEvent", "ErrorEvent", "FinishedEvent")],
        },
    }
