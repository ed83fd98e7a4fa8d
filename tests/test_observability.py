"""Operators can watch it: structured log records per request and model run, Prometheus metrics, probes."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from urllib.parse import quote

import httpx
import pytest
import ray

from serve_app.observability.logs import JsonFormatter, loggable_url
from serve_app.observability.metrics import METRICS
from tests.sse import post


def _records(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    """The structured fields of every captured record of one kind."""
    return [r.fields for r in caplog.records if getattr(r, "fields", {}).get("event") == event]


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_log_records_match_the_events(
    local_server: str, audio: dict[str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """One request record and one record per model run; correlation ids equal the events'; failures say so."""
    caplog.set_level(logging.INFO, logger="mirstream")
    stream = post(local_server, "key,fail", audio["cadence.mp3"])
    deadline = time.monotonic() + 10
    while len(_records(caplog, "request")) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the request record is written as the response closes
    events = stream.by_model()
    runs = {r["correlation_id"]: r for r in _records(caplog, "model_run")}
    for name, outcome in (("key", "completed"), ("fail", "error")):
        event = events[name]
        cid = event["result"]["correlation_id"] if outcome == "completed" else event["correlation_id"]
        run = runs[cid]
        assert run["model"] == f"{name}:1" and run["outcome"] == outcome
        assert run["audio_seconds"] == pytest.approx(12.0, abs=0.2)
        if outcome == "completed":
            assert run["compute_s"] > 0 and run["queue_s"] >= 0
    request = _records(caplog, "request")[-1]
    assert request["outcome"] == "model_errors" and request["models"] == ["key:1", "fail:1"]
    assert request["container"] == "mp3" and request["decode_s"] > 0 and request["source"] == "upload"
    assert {r["request_id"] for r in runs.values()} == {request["request_id"]}


def test_url_query_strings_are_not_logged(
    local_server: str,
    cdn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A token in the audio-url's query string never reaches the logs; host and path do."""
    caplog.set_level(logging.INFO, logger="mirstream")
    url = f"{cdn}/click.mp3?token=sekrit-123&sig=abc"
    assert post(local_server, "key", None, {"audio-url": quote(url, safe="")}).events[-1]["status"] == "finished"
    time.sleep(0.2)
    assert "sekrit-123" not in caplog.text
    assert any(r.get("url") == f"{cdn}/click.mp3" for r in _records(caplog, "request"))


def test_local_metrics_count_runs_errors_rejections(local_server: str, audio: dict[str, bytes]) -> None:
    """/metrics (in-process mode) moves by exactly what the requests did."""
    before = httpx.get(f"{local_server}/metrics").text
    post(local_server, "key,fail", audio["cadence.flac"])
    post(local_server, "nope", audio["cadence.flac"])
    time.sleep(0.2)
    after = httpx.get(f"{local_server}/metrics").text
    for name, labels, delta in [
        ("mirstream_model_runs_total", {"model": "fail:1", "outcome": "error"}, 1),
        ("mirstream_model_runs_total", {"model": "key:1", "outcome": "completed"}, 1),
        ("mirstream_requests_total", {"outcome": "model_errors"}, 1),
        ("mirstream_rejected_requests_total", {"status": "404"}, 1),
        ("mirstream_decode_seconds_count", {"container": "flac"}, 1),
        ("mirstream_model_compute_seconds_count", {"model": "key:1"}, 1),
    ]:
        assert _sample(after, name, **labels) - _sample(before, name, **labels) == delta, (name, labels)
    assert _sample(after, "mirstream_audio_seconds_total") - _sample(before, "mirstream_audio_seconds_total") > 11
    assert "mirstream_streams_in_flight" in after


def test_ray_metrics_include_ours_and_serves(ray_server: str, audio: dict[str, bytes]) -> None:
    """Ray mode: Ray's metrics agent exports mirstream's metrics (ray_ prefix) next to Ray Serve's."""
    port = ray._private.worker.global_worker.node.metrics_export_port
    post(ray_server, "fail", audio["cadence.flac"])
    text = ""
    deadline = time.monotonic() + 90  # Ray exports metrics every few seconds
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if _sample(text, "ray_mirstream_model_runs_total", model="fail:1", outcome="error") >= 1:
            break
        time.sleep(2)
    assert _sample(text, "ray_mirstream_model_runs_total", model="fail:1", outcome="error") >= 1
    assert re.search(r"^ray_serve_\w+", text, re.M), "Ray Serve's built-in metrics are missing"
    hint = httpx.get(f"{ray_server}/metrics")
    assert hint.status_code == 404 and "metrics agent on port" in hint.json()["detail"]


def test_probes(server: str) -> None:
    """/livez: the process answers; /readyz = /healthz: every deployment ready."""
    assert httpx.get(f"{server}/livez").json() == {"status": "alive"}
    ready = httpx.get(f"{server}/readyz")
    assert ready.status_code == 200 and ready.json() == httpx.get(f"{server}/healthz").json()


def test_json_formatter_and_url_scrubbing() -> None:
    """A record's fields become top-level JSON keys; URLs lose credentials, query and fragment."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("mirstream.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("hello %s", "x", extra={"fields": {"request_id": "r1", "compute_s": 0.5}})
    line = json.loads(stream.getvalue())
    assert line["msg"] == "hello x" and line["request_id"] == "r1" and line["level"] == "WARNING"
    assert loggable_url("https://user:pw@cdn.example.org:8443/a/b.mp3?t=1#x") == "https://cdn.example.org:8443/a/b.mp3"


def test_every_metric_has_a_kind_and_description() -> None:
    """The metric table is the single place names come from (the dashboard test checks against it)."""
    assert all(kind in ("counter", "histogram", "gauge") and doc for kind, doc, _ in METRICS.values())
