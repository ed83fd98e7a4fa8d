"""``GET /v1/models``, errors and health answers: their JSON Schemas, one definition for server, docs and client."""

from __future__ import annotations

from typing import Any


def catalogue_schemas(ref: str = "#/components/schemas/") -> dict[str, Any]:
    """Error body, one catalogue entry, the catalogue, and the health answer."""
    return {
        "Error": {
            "type": "object",
            "required": ["detail"],
            "properties": {"detail": {"type": "string", "description": "What is wrong and how to fix it"}},
        },
        "Model": {
            "type": "object",
            "required": ["name", "version", "default", "description", "inputs", "license", "output_schema"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "default": {"type": "boolean", "description": "The version a bare name resolves to"},
                "aliases": {"type": "array", "items": {"type": "string"}},
                "description": {"type": "string"},
                "params": {"type": "object"},
                "input": {
                    "type": ["object", "null"],
                    "description": "The audio it takes (null when only other models feed it)",
                    "properties": {
                        "sample_rate": {"type": ["integer", "string"], "description": "Hz, or 'native'"},
                        "channels": {"type": "string", "enum": ["mono", "original"]},
                    },
                },
                "inputs": {
                    "type": "object",
                    "description": "Each analyzer input: the decoded audio, or another model's results (the graph)",
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "object", "required": ["audio"], "properties": {"audio": {"type": "object"}}},
                            {"type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}},
                        ]
                    },
                },
                "warm": {"type": "boolean", "description": "Kept running; otherwise started on first use"},
                "resources": {"type": "object"},
                "autoscaling": {"type": "object"},
                "timeout_s": {"type": ["number", "null"]},
                "license": {"type": "object", "additionalProperties": {"type": ["string", "boolean"]}},
                "weights": {"type": "array", "items": {"type": "object"}},
                "output_schema": {"type": "object", "description": "JSON Schema of this model's `results`"},
                "available": {"type": "boolean", "description": "False when listed but not served here"},
                "reason": {"type": "string", "description": "Why it is unavailable and how to fix it"},
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["models"],
            "properties": {"models": {"type": "array", "items": {"$ref": ref + "Model"}}},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable", "alive"]},
                "deployments": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }
