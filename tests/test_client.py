"""serve_app.client against the real in-process server: typed events, errors with the server's message, safe retries.

The retry edge cases a real server cannot produce on demand (a refused connection followed by success, a
stream cut after its first event) use httpx's MockTransport in place of the network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_app.client import (
    AsyncClient,
    AudioError,
    AuthenticationError,
    Client,
    Completed,
    Finished,
    MirstreamConnectionError,
    MirstreamHTTPError,
    MirstreamProtocolError,
    ModelError,
    RateLimitError,
    RetryPolicy,
    ServerBusyError,
    Started,
    parse_event,
)
from serve_app.client.errors import retry_after_seconds
from serve_app.config import hash_key
from serve_app.registry import parse_registry
from tests.conftest import free_port, make_settings, registry_data, running_local_server

NO_WAIT = RetryPolicy(max_retries=3, backoff_s=0.01)


def test_sync_stream_yields_typed_events_in_contract_order(local_server: str, audio: dict[str, bytes]) -> None:
    """Started, one Completed/ModelError per model, Finished; fields mirror the contract."""
    with Client(local_server) as client:
        events = list(client.stream(audio["click.mp3"], models="bpm_degara,fail", filename="click.mp3"))
    assert isinstance(events[0], Started) and events[0].total_models == 2
    assert isinstance(events[-1], Finished) and events[-1].total_models == 2
    by_model = {e.model_name: e for e in events[1:-1]}
    bpm = by_model["bpm_degara"]
    assert isinstance(bpm, Completed) and bpm.model_version == "1" and bpm.model == "bpm_degara:1"
    assert abs(bpm.results["bpm"] - 120) < 1 and len(bpm.results["beats"]) == bpm.results["beat_count"]
    uuid.UUID(bpm.correlation_id, version=4)
    fail = by_model["fail"]
    assert isinstance(fail, ModelError) and not isinstance(fail, AudioError)
    assert fail.error == "fixture model failed on purpose" and fail.model == "fail:1"
    assert fail.raw["status"] == "error"  # the event exactly as received is kept


def test_file_path_and_analyze_collects_everything(local_server: str, audio: dict[str, bytes], tmp_path: Path) -> None:
    """A path is uploaded (Path or str); analyze() gathers results by model name and reports errors."""
    path = tmp_path / "cadence.flac"
    path.write_bytes(audio["cadence.flac"])
    with Client(local_server) as client:
        analysis = client.analyze(path, ["key", "loudness_ebur128"])
        again = client.analyze(str(path), "key:1")
    assert analysis.ok and analysis.total_models == 2
    assert analysis.results("key")["key"] == "C" and analysis.results("key")["scale"] == "major"
    assert analysis.results("loudness-ebur128")["integrated_loudness"] < 0  # canonical name, alias requested
    assert again.results("key") == analysis.results("key")


def test_audio_url_and_audio_error(local_server: str, cdn: str) -> None:
    """A URL is sent as the audio-url header (the server fetches it); an unreadable URL is an AudioError."""
    with Client(local_server) as client:
        ok = client.analyze(f"{cdn}/click.mp3", "bpm_degara")
        bad = list(client.stream(f"{cdn}/missing", "bpm_degara"))
    assert abs(ok.results("bpm_degara")["bpm"] - 120) < 1
    assert [type(e) for e in bad] == [Started, AudioError, Finished]
    assert bad[1].error.startswith("Failed to download or decode audio: ") and bad[1].model_name is None


def test_http_errors_carry_status_and_the_server_message(local_server: str, audio: dict[str, bytes]) -> None:
    """400/404/413 raise MirstreamHTTPError with the server's JSON detail; nothing is retried."""
    with Client(local_server, retry=NO_WAIT) as client:
        with pytest.raises(MirstreamHTTPError) as unknown:
            list(client.stream(audio["click.mp3"], "nope"))
        with pytest.raises(MirstreamHTTPError) as empty:
            list(client.stream(audio["click.mp3"], " , "))
        with pytest.raises(MirstreamHTTPError) as big:
            list(client.stream(b"\0" * (8 * 2**20 + 1), "key"))
    assert unknown.value.status == 404 and "unknown model 'nope'" in unknown.value.detail
    assert "available: key" in str(unknown.value)
    assert empty.value.status == 400 and "malformed" in empty.value.detail
    assert big.value.status == 413 and "at most 8.0 MB" in big.value.detail


def test_models_catalogue(local_server: str) -> None:
    """models() lists the served registry with schemas and licences."""
    with Client(local_server) as client:
        models = {m.model: m for m in client.models()}
    key = models["key:1"]
    assert key.default and key.available and key.unavailable_reason is None
    assert key.output_schema["required"] == ["key", "scale", "strength"]
    assert key.input == {"sample_rate": 44100, "channels": "mono"} and "code" in key.license
    assert {"bpm_degara:1", "loudness-ebur128:1", "slow:2"} <= set(models)


def test_async_client_streams_and_raises(local_server: str, audio: dict[str, bytes]) -> None:
    """AsyncClient: same events with async for; HTTP errors as the same exceptions."""

    async def run() -> tuple[list, MirstreamHTTPError, list]:
        async with AsyncClient(local_server) as client:
            events = [e async for e in client.stream(audio["sine_stereo.wav"], "loudness-ebur128,fail")]
            with pytest.raises(MirstreamHTTPError) as exc:
                await client.analyze(audio["click.mp3"], "key:9")
            return events, exc.value, await client.models()

    events, error, models = asyncio.run(run())
    assert [type(e) for e in (events[0], events[-1])] == [Started, Finished]
    loud = next(e for e in events if isinstance(e, Completed))
    assert abs(loud.results["integrated_loudness"] + 23.0) < 0.05
    assert any(isinstance(e, ModelError) and e.model_name == "fail" for e in events)
    assert error.status == 404 and "no version '9'" in error.detail
    assert any(m.name == "key" for m in models)


# ---- a server with API keys, a rate limit and a single stream slot -----------------------------------------


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[str]:
    """Keys 'alpha' and 'beta' (and 'rate'), 8-request burst per key, one concurrent stream; cheap fixture models."""
    data = registry_data()
    data["models"] = [m for m in data["models"] if m["name"] in ("fail", "slow")]
    settings = dataclasses.replace(
        make_settings(free_port()),
        api_key_hashes=frozenset(hash_key(k) for k in ("alpha", "beta", "rate")),
        rate_limit_per_second=0.01,
        rate_limit_burst=8,
        max_concurrent_streams=1,
    )
    with running_local_server(parse_registry(data, "guarded"), settings) as base:
        yield base


def test_api_key_sent_as_bearer_and_401_distinguishable(guarded_server: str, audio: dict[str, bytes]) -> None:
    """Without/with a wrong key: AuthenticationError (401) with the server's message; the right key works."""
    with Client(guarded_server, api_key="") as anonymous, pytest.raises(AuthenticationError) as missing:
        anonymous.models()
    with Client(guarded_server, api_key="wrong") as wrong, pytest.raises(AuthenticationError) as invalid:
        list(wrong.stream(audio["click.mp3"], "fail"))
    assert missing.value.status == 401 and "missing API key" in missing.value.detail
    assert invalid.value.detail == "invalid API key"
    with Client(guarded_server, api_key="alpha") as client:
        assert [m.name for m in client.models()] == ["fail", "slow", "slow"]


def test_rate_limit_is_a_distinct_error_with_retry_after(guarded_server: str) -> None:
    """429 is not retried: RateLimitError with the server's Retry-After in seconds."""
    with Client(guarded_server, api_key="rate", retry=NO_WAIT) as client:
        for _ in range(8):  # use up the burst (each answered 400: no audio)
            with pytest.raises(MirstreamHTTPError) as exc:
                list(client.stream(b"", "fail"))
            assert exc.value.status == 400
        with pytest.raises(RateLimitError) as limited:
            list(client.stream(b"", "fail"))
    assert limited.value.status == 429 and "rate limit" in limited.value.detail
    assert limited.value.retry_after is not None and limited.value.retry_after >= 1


class CountingTransport(httpx.HTTPTransport):
    """The real network transport, counting the stream requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.posts += request.method == "POST"
        return super().handle_request(request)


def test_503_before_any_event_is_retried_after_retry_after(guarded_server: str, audio: dict[str, bytes]) -> None:
    """With the only slot taken, the client gets 503 + Retry-After, waits, retries and then streams normally."""
    holder_started = threading.Event()

    def hold_the_slot() -> None:
        with Client(guarded_server, api_key="beta") as other:
            for event in other.stream(audio["click.mp3"], "slow:1"):
                if isinstance(event, Started):
                    holder_started.set()

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        assert holder_started.wait(30)
        with Client(guarded_server, api_key="alpha", retry=RetryPolicy(max_retries=0)) as impatient:
            with pytest.raises(ServerBusyError) as busy:
                list(impatient.stream(audio["click.mp3"], "fail"))
        assert busy.value.status == 503 and "server busy" in busy.value.detail and busy.value.retry_after == 2
        transport = CountingTransport()
        with Client(guarded_server, api_key="alpha", transport=transport, retry=RetryPolicy(max_retries=3)) as client:
            events = list(client.stream(audio["click.mp3"], "fail"))
    finally:
        holder.join(30)
    assert transport.posts >= 2, "the first attempt should have met the busy slot"
    assert [e.status for e in events] == ["started", "error", "finished"]


# ---- retry edge cases with a scripted transport ----------------------------------------------------------------

STREAM_OK = (
    b'data: {"status": "started", "total_models": 1}\n\n'
    b": keep-alive\n\n"
    b'data: {"status": "completed", "result": {"model_name": "key", "model_version": "1", '
    b'"correlation_id": "c0ffee00-0000-4000-8000-000000000000", '
    b'"results": {"key": "A", "scale": "minor", "strength": 0.5}}}\n\n'
    b'data: {"status": "finished", "total_models": 1}\n\n'
)
SSE = {"content-type": "text/event-stream"}


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that delivers the started event, then loses the connection."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'data: {"status": "started", "total_models": 1}\n\n'
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self):  # noqa: ANN204 (an async generator)
        yield b'data: {"status": "started", "total_models": 1}\n\n'
        raise httpx.ReadError("connection reset by peer")


def scripted(steps: list) -> tuple[list[httpx.Request], httpx.MockTransport]:
    """A transport answering each request with the next step: an exception to raise, or a response."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return seen, httpx.MockTransport(handler)


def test_connect_error_and_503_are_retried_then_the_stream_is_read() -> None:
    """Refused connection, then 503 (Retry-After: 0), then the stream: three attempts, typed events, same request."""
    seen, transport = scripted(
        [
            httpx.ConnectError("connection refused"),
            httpx.Response(503, json={"detail": "server busy"}, headers={"Retry-After": "0"}),
            httpx.Response(200, content=STREAM_OK, headers=SSE),
        ]
    )
    with Client("http://mirstream.test", api_key="k", transport=transport, retry=NO_WAIT) as client:
        events = list(client.stream(b"RIFF....", "key"))
    assert len(seen) == 3
    assert [e.status for e in events] == ["started", "completed", "finished"]
    assert events[1].results == {"key": "A", "scale": "minor", "strength": 0.5}
    assert all(r.headers["authorization"] == "Bearer k" and r.content == b"RIFF...." for r in seen)
    assert seen[0].url.params["models"] == "key"


def test_a_stream_cut_after_an_event_is_not_retried() -> None:
    """Once an event arrived the analysis may be running: the client raises instead of sending it again."""
    seen, transport = scripted([httpx.Response(200, stream=CutStream(), headers=SSE)])
    received = []
    with Client("http://mirstream.test", transport=transport, retry=NO_WAIT) as client:
        with pytest.raises(MirstreamConnectionError, match="after the stream had started"):
            for event in client.stream(b"x", "key"):
                received.append(event)
    assert len(seen) == 1 and [type(e) for e in received] == [Started]


def test_async_retry_then_cut_stream() -> None:
    """The async client follows the same rules."""
    seen, transport = scripted(
        [
            httpx.ConnectError("refused"),
            httpx.Response(200, stream=CutStream(), headers=SSE),
        ]
    )

    async def run() -> list:
        received = []
        async with AsyncClient("http://mirstream.test", transport=transport, retry=NO_WAIT) as client:
            with pytest.raises(MirstreamConnectionError):
                async for event in client.stream(b"x", "key"):
                    received.append(event)
        return received

    assert [type(e) for e in asyncio.run(run())] == [Started]
    assert len(seen) == 2


def test_retry_bounds() -> None:
    """A Retry-After beyond max_wait_s, or running out of retries, raises the last error at once."""
    seen, transport = scripted([httpx.Response(503, json={"detail": "busy"}, headers={"Retry-After": "3600"})])
    with Client("http://mirstream.test", transport=transport) as client, pytest.raises(ServerBusyError) as exc:
        list(client.stream(b"x", "key"))
    assert len(seen) == 1 and exc.value.retry_after == 3600
    seen, transport = scripted([httpx.ConnectError("refused")])
    with Client("http://mirstream.test", transport=transport, retry=NO_WAIT) as client:
        with pytest.raises(MirstreamConnectionError, match="before any event"):
            list(client.stream(b"x", "key"))
    assert len(seen) == 4  # the first try and three retries


def test_protocol_errors() -> None:
    """Not an event stream, or a stream without its finished event, is a MirstreamProtocolError."""
    _, html = scripted([httpx.Response(200, text="<html>proxy login</html>", headers={"content-type": "text/html"})])
    with Client("http://x.test", transport=html) as client, pytest.raises(MirstreamProtocolError, match="text/html"):
        list(client.stream(b"x", "key"))
    _, short = scripted([httpx.Response(200, content=STREAM_OK.rsplit(b"data:", 1)[0], headers=SSE)])
    with Client("http://x.test", transport=short) as client, pytest.raises(MirstreamProtocolError, match="finished"):
        list(client.stream(b"x", "key"))
    with pytest.raises(MirstreamProtocolError, match="unknown event status"):
        parse_event({"status": "paused"})
    _, proxy = scripted([httpx.Response(502, text="Bad Gateway")])
    with Client("http://x.test", transport=proxy) as client, pytest.raises(MirstreamHTTPError) as exc:
        list(client.stream(b"x", "key"))
    assert exc.value.status == 502 and exc.value.detail == "Bad Gateway"


def test_retry_after_forms() -> None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110)."""
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_analysis_keeps_two_versions_of_one_model_apart() -> None:
    """``key:1,key:2`` in one request: both results stay (keyed by name:version); a bare name that is ambiguous
    raises instead of picking one; any spelling of the name finds a single version."""
    from serve_app.client.events import Analysis, Completed, Finished

    analysis = Analysis()
    for version, key in (("1", "C"), ("2", "G")):
        analysis.add(Completed("key", version, str(uuid.uuid4()), {"key": key}))
    analysis.add(Completed("loudness-ebur128", "1", str(uuid.uuid4()), {"integrated_loudness": -14.0}))
    analysis.add(Finished(3))
    assert sorted(analysis.completed) == ["key:1", "key:2", "loudness-ebur128:1"]
    assert analysis.results("key:1") == {"key": "C"} and analysis.results("key:2") == {"key": "G"}
    with pytest.raises(KeyError, match="ask for name:version"):
        analysis.results("key")
    assert analysis.results("LOUDNESS_EBUR128")["integrated_loudness"] == -14.0
    assert analysis.ok and analysis.total_models == 3
