"""The contract of POST /v1/analysis/stream (shared/spec/analysis-stream.md), against both real servers."""

from __future__ import annotations

import uuid

import httpx
import jsonschema
import pytest

from serve_app.registry import Registry
from tests.audio_factory import FORMATS
from tests.conftest import MAX_UPLOAD
from tests.sse import Stream, post

SEED = "key:1,bpm_degara,loudness-ebur128"


def assert_well_formed(stream: Stream, total: int) -> None:
    """started first, finished last, one event per model in between, all with the contract's fields."""
    assert stream.status == 200, stream.body
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.headers["x-accel-buffering"] == "no"
    assert stream.events[0] == {"status": "started", "total_models": total}
    assert stream.events[-1] == {"status": "finished", "total_models": total}
    middle = stream.events[1:-1]
    for event in middle:
        assert event["status"] in ("completed", "error")
        fields = event["result"] if event["status"] == "completed" else event
        if event["status"] == "error" and "model_name" not in event:
            continue  # the single download/decode error
        assert isinstance(fields["model_version"], str)
        assert uuid.UUID(fields["correlation_id"]).version == 4


def test_seed_models_on_mp3(server: str, audio: dict[str, bytes], registry: Registry) -> None:
    """Three models on a 120 BPM click track: one completed event each, results match schema and truth."""
    stream = post(server, SEED, audio["click.mp3"], {"filename": "click.mp3"})
    assert_well_formed(stream, 3)
    models = stream.by_model()
    assert set(models) == {"key", "bpm_degara", "loudness-ebur128"}
    assert all(e["status"] == "completed" for e in models.values()), models
    ids = {e["result"]["correlation_id"] for e in models.values()}
    assert len(ids) == 3
    for name, event in models.items():
        entry = registry.find(name, None)
        jsonschema.validate(event["result"]["results"], entry.output_schema)
        assert event["result"]["model_version"] == "1"
    rhythm = models["bpm_degara"]["result"]["results"]
    assert rhythm["bpm"] == pytest.approx(120.0, abs=1.0)
    assert rhythm["beats"][1] - rhythm["beats"][0] == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_container_decodes_and_keys(server: str, audio: dict[str, bytes], fmt: str) -> None:
    """Each container the spec lists (sniffed, with a misleading filename) gives C major."""
    stream = post(server, "key", audio[f"cadence.{fmt}"], {"filename": "track.wav"})
    assert_well_formed(stream, 1)
    result = stream.events[1]["result"]["results"]
    assert (result["key"], result["scale"]) == ("C", "major"), result


def test_loudness_of_stereo_sine(server: str, audio: dict[str, bytes]) -> None:
    """EBU Tech 3341 case 1: stereo 1 kHz at -23 dBFS reads -23.0 ±0.1 LUFS, at the file's 48 kHz."""
    stream = post(server, "loudness_ebur128", audio["sine_stereo.wav"])
    assert_well_formed(stream, 1)
    result = stream.events[1]["result"]
    assert result["model_name"] == "loudness-ebur128"
    assert result["results"]["integrated_loudness"] == pytest.approx(-23.0, abs=0.1)
    assert result["results"]["sample_rate"] == 48000
    assert result["results"]["channels"] == 2
    assert result["results"]["loudness_range"] == pytest.approx(0.0, abs=0.1)


def test_loudness_of_mono_sine_follows_bs1770(server: str, audio: dict[str, bytes]) -> None:
    """A mono channel counts once (weight 1.0): 3.01 LU below the same sine on two channels."""
    stream = post(server, "loudness-ebur128", audio["sine_mono.flac"])
    result = stream.events[1]["result"]["results"]
    assert result["channels"] == 1
    assert result["integrated_loudness"] == pytest.approx(-26.01, abs=0.1)


def test_spellings_aliases_whitespace_and_repeats(server: str, audio: dict[str, bytes]) -> None:
    """Case-insensitive names, '-' == '_', aliases, spaces around items; a repeated item runs once."""
    stream = post(server, " KEY_ESSENTIA , key:1,Loudness_EBUR128 ,loudness-ebur128:1", audio["cadence.wav"])
    assert_well_formed(stream, 2)
    assert set(stream.by_model()) == {"key", "loudness-ebur128"}


def test_model_failure_is_its_own_error_event(server: str, audio: dict[str, bytes]) -> None:
    """A raising model gives an error event with its own message; the other model still completes."""
    stream = post(server, "fail,key", audio["cadence.wav"])
    assert_well_formed(stream, 2)
    models = stream.by_model()
    assert models["key"]["status"] == "completed"
    failed = models["fail"]
    assert failed["status"] == "error"
    assert failed["error"] == "fixture model failed on purpose"
    assert failed["model_version"] == "1"


def test_fast_model_is_not_held_back_and_keepalive_is_sent(server: str, audio: dict[str, bytes]) -> None:
    """Events arrive in completion order: key before the 2 s model; keep-alive comments fill the wait."""
    stream = post(server, "slow,key", audio["cadence.wav"])
    assert_well_formed(stream, 2)
    order = [e["result"]["model_name"] for e in stream.events[1:-1]]
    assert order == ["key", "slow"]
    assert ": keep-alive" in stream.comments


@pytest.mark.parametrize(
    ("models", "status", "needle"),
    [
        (None, 400, "missing 'models'"),
        ("", 400, "missing 'models'"),
        ("key,,bpm_degara", 400, "empty item"),
        ("key:", 400, "malformed model spec"),
        ("key:1:2", 400, "malformed model spec"),
        ("tempo", 404, "available: key (versions: 1)"),
        ("key:9", 404, "no version '9'"),
    ],
)
def test_bad_models_parameter(
    server: str, audio: dict[str, bytes], models: str | None, status: int, needle: str
) -> None:
    """Request-level problems are plain HTTP errors with a JSON detail that says what exists."""
    stream = post(server, models, audio["cadence.wav"])
    assert stream.status == status
    assert needle in httpx.Response(200, content=stream.body).json()["detail"]


def test_audio_sources_both_or_neither(server: str, audio: dict[str, bytes]) -> None:
    """Body XOR audio-url: both is 400, neither (empty body) is 400."""
    both = post(server, "key", audio["cadence.wav"], {"audio-url": "https%3A%2F%2Fexample.org%2Fa.mp3"})
    assert both.status == 400 and "not both" in both.body.decode()
    neither = post(server, "key", b"")
    assert neither.status == 400 and "no audio" in neither.body.decode()


def test_multipart_form_is_415_with_the_fix(server: str, audio: dict[str, bytes]) -> None:
    """A curl -F upload is named as the mistake it is, before the stream starts, with the command that works."""
    form = httpx.post(
        f"{server}/v1/analysis/stream",
        params={"models": "key"},
        files={"file": ("cadence.wav", audio["cadence.wav"], "audio/wav")},
        timeout=30,
    )
    assert form.status_code == 415
    assert "--data-binary" in form.json()["detail"]


def test_upload_over_limit_is_413(server: str) -> None:
    """Content-Length over the limit is refused before the body is read."""
    stream = post(server, "key", b"\0" * (MAX_UPLOAD + 1))
    assert stream.status == 413
    assert "MB" in httpx.Response(200, content=stream.body).json()["detail"]


def test_chunked_upload_over_limit_is_413(server: str) -> None:
    """Without Content-Length the limit is enforced while streaming."""

    def chunks():
        for _ in range(MAX_UPLOAD // 2**20 + 2):
            yield b"\0" * 2**20

    with httpx.Client(timeout=60) as client:
        r = client.post(f"{server}/v1/analysis/stream", params={"models": "key"}, content=chunks())
    assert r.status_code == 413
    assert "at least" in r.json()["detail"]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("garbage", "not a readable audio file"),
        ("too_long.flac", "accepts at most 60 s"),
    ],
)
def test_undecodable_audio_is_one_error_event(server: str, audio: dict[str, bytes], name: str, needle: str) -> None:
    """No model runs: started, one download/decode error, finished."""
    stream = post(server, SEED, audio[name])
    assert stream.statuses() == ["started", "error", "finished"]
    error = stream.events[1]["error"]
    assert error.startswith("Failed to download or decode audio: ") and needle in error, error
    assert "model_name" not in stream.events[1]


def test_truncated_mp3_still_analysed_and_server_survives(server: str, audio: dict[str, bytes]) -> None:
    """A cut-off mp3 decodes what is there; after garbage and truncation the server still answers."""
    stream = post(server, "loudness-ebur128", audio["truncated.mp3"])
    assert_well_formed(stream, 1)
    assert stream.events[1]["status"] == "completed"
    assert httpx.get(f"{server}/healthz", timeout=10).status_code == 200
    assert post(server, "key", audio["cadence.flac"]).events[1]["status"] == "completed"


def test_models_catalogue_and_health(server: str) -> None:
    """GET /v1/models lists every entry with schema and licence; /healthz is 200 with all deployments."""
    models = httpx.get(f"{server}/v1/models", timeout=10).json()["models"]
    by_key = {f"{m['name']}:{m['version']}": m for m in models}
    assert {"key:1", "bpm_degara:1", "loudness-ebur128:1"} <= set(by_key)
    loud = by_key["loudness-ebur128:1"]
    assert loud["default"] is True and "loudness_ebur128" in loud["aliases"]
    assert loud["output_schema"]["type"] == "object" and loud["license"]["code"]
    health = httpx.get(f"{server}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_unknown_route_and_method_have_json_detail(server: str) -> None:
    """Even framework errors answer with a JSON detail."""
    assert httpx.get(f"{server}/nope", timeout=10).json() == {"detail": "Not Found"}
    r = httpx.get(f"{server}/v1/analysis/stream", timeout=10)
    assert r.status_code == 405 and "detail" in r.json()
