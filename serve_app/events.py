"""The SSE wire format of the contract: event payloads and their ``data: <json>\\n\\n`` framing."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from serve_app.registry import ModelEntry

KEEPALIVE = ": keep-alive\n\n"
DECODE_ERROR_PREFIX = "Failed to download or decode audio: "


def jsonable(value: Any) -> Any:
    """Plain JSON types only: numpy scalars/arrays converted, NaN/±inf (no JSON form) become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sse(payload: dict[str, Any]) -> str:
    """Frame one event as a single ``data:`` line followed by a blank line."""
    return f"data: {json.dumps(payload, separators=(', ', ': '), allow_nan=False)}\n\n"


def started(total: int) -> dict[str, Any]:
    """First event, sent before any download or decoding."""
    return {"status": "started", "total_models": total}


def finished(total: int) -> dict[str, Any]:
    """Last event, always sent, also after errors."""
    return {"status": "finished", "total_models": total}


def completed(entry: ModelEntry, correlation_id: str, results: dict[str, Any]) -> dict[str, Any]:
    """One model's results."""
    return {
        "status": "completed",
        "result": {
            "model_name": entry.name,
            "model_version": entry.version,
            "correlation_id": correlation_id,
            "results": jsonable(results),
        },
    }


def model_error(entry: ModelEntry, correlation_id: str, message: str) -> dict[str, Any]:
    """One model failed; the others still report."""
    return {
        "status": "error",
        "error": message,
        "model_name": entry.name,
        "model_version": entry.version,
        "correlation_id": correlation_id,
    }


def audio_error(reason: str) -> dict[str, Any]:
    """The single error sent instead of any model event when the audio cannot be had."""
    return {"status": "error", "error": DECODE_ERROR_PREFIX + reason}
