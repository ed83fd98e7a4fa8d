"""A client that disconnects cancels the model work queued on its behalf (Ray Serve and process pool)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import pytest

from models.base import Audio, Cancelled, cancellable
from models.loudness import LoudnessEBUR128Analyzer
from models.spectral import SpectralSummaryAnalyzer
from serve_app.registry import Registry
from serve_app.runners.in_process import ProcessPoolRunner
from tests.audio_factory import click_track, sine
from tests.sse import post


def _disconnect_after_keepalive(base: str, body: bytes) -> None:
    """Open a 'slow' stream, wait until the model call is queued (first keep-alive), then hang up."""
    with httpx.Client(timeout=30) as client:
        with client.stream("POST", f"{base}/v1/analysis/stream", params={"models": "slow"}, content=body) as r:
            for line in r.iter_lines():
                if line.startswith(": keep-alive"):
                    return


def test_ray_disconnect_cancels_queued_model_call(ray_server: str, audio: dict[str, bytes]) -> None:
    """The 'slow' deployment takes one request at a time: a hung-up request queued behind another never runs."""
    body = audio["cadence.wav"]
    first: dict[str, object] = {}
    runner = threading.Thread(target=lambda: first.update(stream=post(ray_server, "slow", body)))
    runner.start()
    _disconnect_after_keepalive(ray_server, body)  # queued behind `first` on the single replica
    runner.join(timeout=60)
    runs_before = first["stream"].events[1]["result"]["results"]["runs"]
    after = post(ray_server, "slow", body)
    assert after.events[1]["result"]["results"]["runs"] == runs_before + 1


@pytest.mark.server
def test_process_pool_cancel_drops_queued_work(registry: Registry) -> None:
    """In-process mode: a cancelled run that was waiting for the model's single worker never executes."""
    slow = registry.find("slow", None)
    audio = Audio(np.zeros(16000, np.float32), 16000)
    runner = ProcessPoolRunner(Registry(entries=(slow,)))

    inputs = {"audio": audio}

    async def scenario() -> tuple[dict, dict]:
        first = asyncio.create_task(runner.run(slow, inputs))
        await asyncio.sleep(0.5)
        second = asyncio.create_task(runner.run(slow, inputs))
        await asyncio.sleep(0.2)
        second.cancel()
        done_first = await first
        return done_first.output.results, (await runner.run(slow, inputs)).output.results

    try:
        first, third = asyncio.run(scenario())
    finally:
        runner.close()
    assert third["runs"] == first["runs"] + 1


def test_multi_stage_analyzers_stop_when_flagged() -> None:
    """Real analyzers poll the flag between stages: a flagged run raises Cancelled instead of finishing."""
    flag = threading.Event()
    flag.set()
    with cancellable(flag), pytest.raises(Cancelled):
        SpectralSummaryAnalyzer().analyze(Audio(click_track(120.0, 5.0), 44100))
    with cancellable(flag), pytest.raises(Cancelled):
        LoudnessEBUR128Analyzer().analyze(Audio(sine(1000.0, -23.0, 3.0, 48000, 2), 48000))
    assert SpectralSummaryAnalyzer().analyze(Audio(click_track(120.0, 5.0), 44100))["frames"] > 0  # unflagged: runs
