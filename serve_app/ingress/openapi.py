"""The OpenAPI 3.1 document of the HTTP surface, generated from the registry once at start-up.

It describes the stream endpoint (query, headers, bodies, the SSE events of docs/analysis-stream.md and
every model's ``results`` schema, taken verbatim from ``output_schema`` in model_registry.yaml), the
catalogue and the health routes. Served at ``/openapi.json`` and rendered by ``/docs``.
"""

from __future__ import annotations

import copy
import re
from importlib import metadata
from typing import Any

from serve_app.config import Settings
from serve_app.contract.catalogue import catalogue_schemas
from serve_app.contract.events import MODELS_PATH, STREAM_PATH, event_schemas
from serve_app.registry import ModelEntry, Registry

_REF = "#/components/schemas/"


def _version() -> str:
    """The installed package version (a source checkout that is not installed says so)."""
    try:
        return metadata.version("mirstream")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def result_schema_name(entry: ModelEntry) -> str:
    """``result_<name>_<version>``, restricted to the characters OpenAPI allows in component keys."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"result_{entry.name}_{entry.version}")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A plain HTTP error with the contract's ``{"detail": ...}`` body."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def _event_schemas(entries: list[ModelEntry]) -> dict[str, Any]:
    """The contract's event schemas; ``ModelResult`` also ties each model name/version to its results schema."""
    schemas = event_schemas(_REF)
    per_model = [
        {
            "title": f"{e.name}:{e.version}",
            "properties": {
                "model_name": {"const": e.name},
                "model_version": {"const": e.version},
                "results": _ref(result_schema_name(e)),
            },
        }
        for e in entries
    ]
    if per_model:
        schemas["ModelResult"]["oneOf"] = per_model
    return schemas


def _rebase_refs(node: Any, base: str) -> Any:
    """Point a schema's local ``#/...`` references (``#/$defs/x``) at where it now lives inside this document."""
    if isinstance(node, dict):
        return {
            k: (base + v[1:] if k == "$ref" and isinstance(v, str) and v.startswith("#/") else _rebase_refs(v, base))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rebase_refs(v, base) for v in node]
    return node


def _result_schemas(entries: list[ModelEntry]) -> dict[str, Any]:
    """Each model's ``output_schema`` (a JSON Schema, which OpenAPI 3.1 takes as is) with a title."""
    out = {}
    for e in entries:
        schema = _rebase_refs(copy.deepcopy(e.output_schema), _REF + result_schema_name(e))
        schema.setdefault("title", f"{e.name}:{e.version} results")
        schema.setdefault("description", e.description)
        out[result_schema_name(e)] = schema
    return out


def _stream_operation(entries: list[ModelEntry], settings: Settings) -> dict[str, Any]:
    """POST /v1/analysis/stream."""
    names = sorted({e.name for e in entries})
    example = ",".join(n for n in ("key", "bpm_degara", "loudness-ebur128") if n in names) or ",".join(names[:3])
    audio_body = {"schema": {"description": "The encoded audio file"}}
    return {
        "operationId": "analysisStream",
        "tags": ["analysis"],
        "summary": "Analyse one audio file with the chosen models; results stream back as Server-Sent Events",
        "description": (
            "Send the audio EITHER as the raw request body (mp3, wav, flac, ogg/opus, m4a/aac, aiff; the format is "
            "sniffed from the bytes) OR as a URL-encoded `audio-url` header with an empty body.\n\n"
            "The answer is `text/event-stream`: `started`, then one `completed` or `error` event per model in "
            "the order they finish, then `finished`. Each event is one line `data: <json>` followed by a blank "
            "line; `: keep-alive` comment lines keep idle proxies from closing the stream. Hanging up cancels "
            f"the work. At most {settings.max_models_per_request} models per request and "
            f"{settings.max_upload_bytes / 2**20:.0f} MB per upload on this server."
        ),
        "parameters": [
            {
                "name": "models",
                "in": "query",
                "required": True,
                "description": (
                    "Comma-separated `name` or `name:version`; case-insensitive, `-` and `_` are the same; a bare "
                    f"name means its default version. Available: {', '.join(names)}."
                ),
                "schema": {"type": "string", "minLength": 1},
                "example": example,
            },
            {
                "name": "audio-url",
                "in": "header",
                "required": False,
                "description": "URL-encoded http(s) address of the audio file for the server to fetch (empty body)",
                "schema": {"type": "string"},
                "example": "https%3A%2F%2Fexample.org%2Ftrack.mp3",
            },
            {
                "name": "filename",
                "in": "header",
                "required": False,
                "description": "Original file name; a hint only (the format is sniffed from the bytes)",
                "schema": {"type": "string"},
            },
        ],
        "security": [{}, {"bearerAuth": []}],
        "requestBody": {
            "required": False,
            "description": "The audio file itself (leave empty when sending `audio-url`).",
            "content": {"application/octet-stream": audio_body, "audio/*": audio_body},
        },
        "responses": {
            "200": {
                "description": "The event stream. Each SSE message's data is one AnalysisEvent.",
                "headers": {
                    "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
                    "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
                },
                "content": {
                    "text/event-stream": {
                        "schema": _ref("AnalysisEvent"),
                        "example": (
                            'data: {"status": "started", "total_models": 1}\n\n'
                            'data: {"status": "completed", "result": {"model_name": "key", "model_version": "1", '
                            '"correlation_id": "0b0c7a1e-4f0e-4b8e-9d55-8d1c3c1f9a62", '
                            '"results": {"key": "C", "scale": "major", "strength": 0.85}}}\n\n'
                            'data: {"status": "finished", "total_models": 1}\n\n'
                        ),
                    }
                },
            },
            "400": _error_response("Missing/malformed `models`, too many models, or both/neither audio sources"),
            "401": _error_response(
                "Missing or wrong API key",
                {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
            ),
            "403": _error_response("The model is listed but turned off by an operator setting"),
            "404": _error_response("Unknown model or version (the message lists what exists)"),
            "409": _error_response("The model's weights are not installed here (the message names the fix)"),
            "413": _error_response("The upload is over the size limit"),
            "415": _error_response("The body is a multipart form; send the audio file itself as the body"),
            "429": _error_response("Too many requests from this key or address", _RETRY_AFTER),
            "503": _error_response("Every stream slot is busy; retry after Retry-After", _RETRY_AFTER),
        },
    }


def _simple_get(operation_id: str, tag: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "tags": [tag], "summary": summary, "responses": responses}}


def _health_paths() -> dict[str, Any]:
    """/healthz, /readyz, /livez, /metrics."""
    health = {"application/json": {"schema": _ref("Health")}}
    ready = {
        "200": {"description": "Every deployment of the served catalogue is ready", "content": health},
        "503": {"description": "At least one deployment is not ready (states per deployment)", "content": health},
    }
    return {
        "/healthz": _simple_get("healthz", "operations", "Readiness: 200 only when every model is ready", ready),
        "/readyz": _simple_get("readyz", "operations", "Same as /healthz", ready),
        "/livez": _simple_get(
            "livez",
            "operations",
            "Liveness of the ingress process (says nothing about the models)",
            {"200": {"description": "Alive", "content": health}},
        ),
        "/metrics": _simple_get(
            "metrics",
            "operations",
            "Prometheus metrics (in-process mode; in Ray mode the 404 names the metrics port)",
            {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {}}}},
                "404": _error_response("Ray mode: scrape Ray's metrics agent instead"),
            },
        ),
    }


def build_openapi(registry: Registry, settings: Settings) -> dict[str, Any]:
    """The whole document for this registry and these limits."""
    listed = registry.catalogue()  # served and withheld entries: the document describes the whole catalogue
    paths: dict[str, Any] = {
        STREAM_PATH: {"post": _stream_operation(listed, settings)},
        MODELS_PATH: {
            "get": {
                "operationId": "listModels",
                "tags": ["analysis"],
                "summary": "The model catalogue with each model's results schema, licence and availability",
                "security": [{}, {"bearerAuth": []}],
                "responses": {
                    "200": {
                        "description": "The catalogue",
                        "content": {"application/json": {"schema": _ref("ModelList")}},
                    },
                    "401": _error_response("Missing or wrong API key"),
                },
            }
        },
        **_health_paths(),
        "/openapi.json": _simple_get(
            "openapi",
            "documentation",
            "This document",
            {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
        ),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "mirstream",
            "version": _version(),
            "summary": "Self-hosted music-audio analysis: POST audio, get results back as Server-Sent Events",
            "description": (
                "Compatible with MTG's hosted Essentia analysis stream. Models are chosen per request; each "
                "model's `results` object is documented below (components `result_<name>_<version>`) and by "
                "`GET /v1/models`. Send `Authorization: Bearer <key>` when the operator configured API keys."
            ),
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "tags": [
            {"name": "analysis", "description": "Analyse audio and list the models"},
            {"name": "operations", "description": "Health probes and metrics"},
            {"name": "documentation", "description": "This API description"},
        ],
        "paths": paths,
        "components": {
            "schemas": {**_event_schemas(listed), **catalogue_schemas(_REF), **_result_schemas(listed)},
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the operator set MIRSTREAM_API_KEYS; otherwise leave it out",
                }
            },
        },
    }
