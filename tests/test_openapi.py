"""/openapi.json (generated from the registry, valid OpenAPI 3.1, true to the real stream) and the /docs page."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry as SchemaRegistry
from referencing import Resource
from referencing.jsonschema import DRAFT202012

from serve_app.config import DEFAULT_REGISTRY, Settings
from serve_app.ingress.openapi import build_openapi, result_schema_name
from serve_app.registry import load_registry
from tests.sse import post

DOC_URI = "urn:mirstream:openapi"


def _event_validator(doc: dict) -> Draft202012Validator:
    """A JSON Schema validator for AnalysisEvent that resolves the document's own #/components refs."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = SchemaRegistry().with_resource(DOC_URI, resource)
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/AnalysisEvent"}, registry=registry)


@pytest.fixture(scope="module")
def served(local_server: str) -> dict:
    """The document as the test server serves it."""
    r = httpx.get(f"{local_server}/openapi.json", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()


def test_served_document_is_valid_openapi_31(served: dict) -> None:
    """openapi-spec-validator accepts it; it names the stream, catalogue and health routes."""
    validate(served)
    assert served["openapi"] == "3.1.0"
    assert {"/v1/analysis/stream", "/v1/models", "/healthz", "/readyz", "/livez", "/metrics"} <= set(served["paths"])


def test_stream_operation_describes_the_contract(served: dict) -> None:
    """Query parameter, audio headers, bearer auth, bodies, the event stream and every error status."""
    op = served["paths"]["/v1/analysis/stream"]["post"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["models"]["in"] == "query" and params["models"]["required"] is True
    assert "key" in params["models"]["description"] and "slow" in params["models"]["description"]
    assert params["audio-url"]["in"] == "header" and params["filename"]["in"] == "header"
    assert {} in op["security"] and {"bearerAuth": []} in op["security"]
    assert served["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": served["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert {"application/octet-stream", "audio/*"} <= set(op["requestBody"]["content"])
    ok = op["responses"]["200"]
    assert ok["content"]["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/AnalysisEvent"}
    assert {"Cache-Control", "X-Accel-Buffering"} <= set(ok["headers"])
    for status in ("400", "401", "404", "413", "415", "429", "503"):
        body = op["responses"][status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/Error"}, status
    assert "Retry-After" in op["responses"]["429"]["headers"] and "Retry-After" in op["responses"]["503"]["headers"]


def test_each_model_result_schema_comes_from_the_registry(served: dict, local_server: str) -> None:
    """components/schemas/result_<name>_<version> is the registry's output_schema (plus a title)."""
    listing = httpx.get(f"{local_server}/v1/models", timeout=30).json()["models"]
    schemas = served["components"]["schemas"]
    for model in listing:
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"result_{model['name']}_{model['version']}")
        got = dict(schemas[name])
        assert got.pop("title") == f"{model['name']}:{model['version']} results"
        got.pop("description", None)
        want = {k: v for k, v in model["output_schema"].items() if k != "description"}
        assert got == want, name
    variants = schemas["ModelResult"]["oneOf"]
    assert len(variants) == len(listing)
    key = next(v for v in variants if v["properties"]["model_name"] == {"const": "key"})
    assert key["properties"]["results"] == {"$ref": "#/components/schemas/result_key_1"}


def test_real_stream_events_match_the_documented_schemas(served: dict, local_server: str, audio: dict) -> None:
    """Every event of a real stream (completed, model error, started, finished) validates against AnalysisEvent,
    and a wrong result shape would not."""
    validator = _event_validator(served)
    stream = post(local_server, "key,bpm_degara,loudness-ebur128,fail", audio["sine_stereo.wav"])
    assert stream.statuses()[0] == "started" and len(stream.events) == 6
    for event in stream.events:
        errors = [e.message for e in validator.iter_errors(event)]
        assert errors == [], (event["status"], errors[:3])
    broken = next(e for e in stream.events if e.get("result", {}).get("model_name") == "key")
    broken = {**broken, "result": {**broken["result"], "results": {"key": "H", "scale": "major", "strength": 1}}}
    assert not validator.is_valid(broken)


def test_full_default_catalogue_builds_a_valid_document() -> None:
    """The shipped model_registry.yaml (every model, withheld or not) gives a valid document with one result
    schema per entry, local $refs inside output schemas re-pointed into the document."""
    registry = load_registry(DEFAULT_REGISTRY)
    doc = build_openapi(registry, Settings())
    validate(doc)
    for entry in registry.entries:
        assert result_schema_name(entry) in doc["components"]["schemas"]
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(doc))
    assert refs and all(r.startswith("#/components/") for r in refs)


def test_docs_and_page_are_served_with_their_assets(local_server: str) -> None:
    """/docs and / are self-contained HTML with a strict CSP; every asset they reference is served."""
    for route in ("/", "/docs"):
        r = httpx.get(local_server + route, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
        assert assets, route
        for asset in assets:
            got = httpx.get(local_server + asset, timeout=30)
            assert got.status_code == 200, asset
            if asset.endswith(".js"):
                assert "javascript" in got.headers["content-type"]
    modules = ["dom", "sse", "plots", "cards", "waveform", "main", "docs"]
    for name in modules:
        assert httpx.get(f"{local_server}/static/js/{name}.js", timeout=30).status_code == 200
