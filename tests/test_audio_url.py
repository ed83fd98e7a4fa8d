"""audio-url: fetched from a loopback HTTP server (redirects, 404, loops, size cap) and refused when private."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from urllib.parse import quote

import pytest

from serve_app.config import Settings
from serve_app.ingress import audio_source
from serve_app.ingress.audio_source import audio_bytes
from serve_app.ingress.decode import AudioError
from serve_app.ingress.request import AnalysisJob
from tests.sse import post


def test_audio_url_is_fetched_and_analysed(server: str, cdn: str) -> None:
    """A URL-encoded audio-url through two redirects: analysed like an upload."""
    stream = post(server, "bpm_degara", None, {"audio-url": quote(f"{cdn}/hop/2", safe="")})
    assert stream.statuses() == ["started", "completed", "finished"], stream.events
    assert stream.events[1]["result"]["results"]["bpm"] == pytest.approx(120.0, abs=1.0)


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/missing", "HTTP 404"),
        ("/loop", "more than 5 redirects"),
        ("/huge", "limit is 8.0 MB"),
        ("/drip", "longer than 3 s"),
        ("/page.html", "returned text/html, not an audio file"),
    ],
)
def test_audio_url_failures_are_the_decode_error_event(server: str, cdn: str, path: str, needle: str) -> None:
    """Download failures are the spec's single error event, with the reason."""
    stream = post(server, "key,bpm_degara", None, {"audio-url": quote(cdn + path, safe="")})
    assert stream.statuses() == ["started", "error", "finished"]
    assert stream.events[1]["error"].startswith("Failed to download or decode audio: ")
    assert needle in stream.events[1]["error"]


def _fetch(url: str, **changes: object) -> bytes:
    """Run the URL fetcher directly with given settings."""
    settings = replace(Settings(), **changes)
    return asyncio.run(audio_bytes(AnalysisJob(models=(), body=None, audio_url=url), settings))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a.mp3",
        "http://[::1]/a.mp3",
        "http://10.1.2.3/a.mp3",
        "http://169.254.169.254/latest",
        "http://[::ffff:192.168.0.1]/a.mp3",
        "http://224.0.0.1/a.mp3",
        "http://localhost/a.mp3",
    ],
)
def test_private_targets_refused_by_default(url: str) -> None:
    """Loopback, private, link-local (cloud metadata), mapped IPv6 and multicast are refused."""
    with pytest.raises(AudioError, match="non-public address"):
        _fetch(url)


def test_private_redirect_hop_is_refused(cdn: str) -> None:
    """Every hop is checked: allowed loopback start, then the same rule would refuse it if private is off."""
    assert len(_fetch(f"{cdn}/hop/1", allow_private_urls=True)) > 1000
    with pytest.raises(AudioError, match="non-public address 127.0.0.1"):
        _fetch(f"{cdn}/hop/1")


@pytest.mark.parametrize(
    ("url", "needle"), [("ftp://example.org/a.mp3", "only http and https"), ("http:///x", "no host")]
)
def test_bad_urls(url: str, needle: str) -> None:
    """Only absolute http(s) URLs."""
    with pytest.raises(AudioError, match=needle):
        _fetch(url)


def test_every_dns_answer_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name with a public and a loopback record is refused before any connection is made."""

    async def two_records(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]

    monkeypatch.setattr(audio_source, "resolve", two_records)
    with pytest.raises(AudioError, match="non-public address 127.0.0.1"):
        _fetch("http://cdn.example.org/a.mp3")


def test_connection_goes_to_the_checked_address(monkeypatch: pytest.MonkeyPatch, cdn: str) -> None:
    """One lookup per hop, and the socket goes to that answer: a name the system cannot resolve still
    reaches the loopback CDN, with its own Host header, so no second (rebindable) lookup happens."""
    port = int(cdn.rsplit(":", 1)[1])
    lookups: list[str] = []

    async def fake_dns(host: str, p: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(audio_source, "resolve", fake_dns)
    data = _fetch(f"http://audio.invalid:{port}/hop/1", allow_private_urls=True)
    assert len(data) > 1000
    assert lookups == ["audio.invalid"] * 3  # one per hop: /hop/1 -> /hop/0 -> /click.mp3
