"""Bounded fuzzing of the decoder and the request parser: no crash, no hang, always a well-formed answer."""

from __future__ import annotations

import io
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve_app.ingress.decode import AudioError, DecodedAudio, decode
from tests.audio_factory import FORMATS, click_track, encode
from tests.sse import parse

SEEDS = {fmt: encode(click_track(120.0, 0.6), 44100, fmt) for fmt in FORMATS}
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode_or_clean_error(data: bytes) -> None:
    """The decoder's whole contract: audio back, or AudioError with a message."""
    try:
        out = decode(data, max_seconds=5)
    except AudioError as exc:
        assert str(exc)
    else:
        assert isinstance(out, DecodedAudio) and out.samples.ndim == 2 and np.isfinite(out.samples).all()


@FUZZ
@given(st.binary(max_size=4096))
def test_decoder_on_random_bytes(data: bytes) -> None:
    """Arbitrary bytes never crash the decoder."""
    _decode_or_clean_error(data)


@FUZZ
@given(st.sampled_from(FORMATS), st.data())
def test_decoder_on_corrupted_real_files(fmt: str, data: st.DataObject) -> None:
    """Real files with flipped bytes, cut ends or spliced garbage decode or fail cleanly."""
    raw = bytearray(SEEDS[fmt])
    for _ in range(data.draw(st.integers(1, 20))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(raw)))
    tail = data.draw(st.binary(max_size=256))
    _decode_or_clean_error(bytes(raw[:cut]) + tail)


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    models=st.one_of(st.none(), header_text, st.sampled_from(["key", "key:1,LOUDNESS-EBUR128", "key:,", ",,"])),
    url=st.one_of(st.none(), header_text, st.just(quote("http://127.0.0.1:1/x.mp3", safe=""))),
    body=st.one_of(st.just(b""), st.binary(max_size=512), st.sampled_from([SEEDS["wav"], SEEDS["mp3"]])),
)
def test_request_parser_answers_well(local_server: str, models: str | None, url: str | None, body: bytes) -> None:
    """Any combination of models, audio-url and body: a JSON 4xx with detail, or a well-formed 200 stream."""
    url = url.strip() if url is not None else None  # HTTP clients refuse header values with edge whitespace
    headers = {"audio-url": url} if url else {}
    params = {"models": models} if models is not None else {}
    r = httpx.post(f"{local_server}/v1/analysis/stream", params=params, headers=headers, content=body, timeout=60)
    if r.status_code == 200:
        events, _ = parse(r.text)
        assert events[0]["status"] == "started" and events[-1]["status"] == "finished"
        assert len(events) >= 3
    else:
        assert r.status_code in (400, 404, 413) and r.json()["detail"], (r.status_code, r.text)


def test_decoder_seed_files_are_valid() -> None:
    """The fuzzing seeds themselves decode (so the corruption test starts from real files)."""
    for fmt, data in SEEDS.items():
        assert decode(data, max_seconds=5).duration == pytest.approx(0.6, abs=0.1), fmt
        assert io.BytesIO(data).getbuffer().nbytes > 0
