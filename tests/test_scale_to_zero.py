"""Scale to zero: models not kept warm start on the first request that needs it and stop again when idle.

The shared test servers keep every fixture warm except ``cold`` (1.5 s to load, MIRSTREAM_IDLE_SECONDS = 4 in
the tests). A stream that needs a cold model gets ``started`` at once, keep-alives while the replica loads, then
the result; afterwards the replica goes back to zero. Shutdown and models that cannot start are tested on a
`mirstream serve` of its own in tests/test_shutdown.py.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from models.base import Audio
from serve_app.registry import Registry
from serve_app.runners.in_process import ProcessPoolRunner
from tests.conftest import IDLE_SECONDS
from tests.sse import post


def _cold_state(server: str) -> str:
    """The cold fixture's deployment state as /healthz reports it."""
    return httpx.get(f"{server}/healthz", timeout=10).json()["deployments"].get("cold-v1", "")


def test_a_cold_model_streams_keepalives_then_its_result(server: str, audio: dict[str, bytes]) -> None:
    """started at once, keep-alives while the replica starts and loads (1.5 s), then the result and finished;
    a warm model in the same request is not held back; /healthz stays 200 throughout."""
    t0 = time.monotonic()
    stream = post(server, "cold,key", audio["cadence.wav"])
    assert stream.statuses() == ["started", "completed", "completed", "finished"], stream.events
    order = [e["result"]["model_name"] for e in stream.events if e["status"] == "completed"]
    assert order == ["key", "cold"]  # the warm model answers first
    assert stream.comments, "no keep-alive while the cold model started"
    assert stream.events[2]["result"]["results"]["pid"] > 0 and time.monotonic() - t0 > 1.5
    assert httpx.get(f"{server}/healthz", timeout=10).status_code == 200


def test_an_idle_cold_model_goes_back_to_zero_and_starts_again(server: str, audio: dict[str, bytes]) -> None:
    """After MIRSTREAM_IDLE_SECONDS without work its replica stops (polled, bounded); the next request starts a new
    one (a new process) and still gets its result."""
    first = post(server, "cold", audio["cadence.wav"]).by_model()["cold"]["result"]["results"]["pid"]
    deadline = time.monotonic() + IDLE_SECONDS + 60
    while not _scaled_to_zero(server):
        assert time.monotonic() < deadline, f"cold model still running: {_cold_state(server)}"
        time.sleep(0.5)
    assert httpx.get(f"{server}/healthz", timeout=10).status_code == 200  # scaled to zero on purpose: ready
    again = post(server, "cold", audio["cadence.wav"])
    assert again.statuses() == ["started", "completed", "finished"], again.events
    assert again.events[1]["result"]["results"]["pid"] != first


def _scaled_to_zero(server: str) -> bool:
    """Whether the cold fixture has no replica: Serve's replica states under Ray, the pool state in-process."""
    if "COLD" == _cold_state(server):
        return True
    try:
        from ray import serve

        app = serve.status().applications.get("mirstream")
    except Exception:  # noqa: BLE001 - not the Ray server (or Ray not started in this process)
        return False
    deployment = app.deployments.get("cold-v1") if app is not None else None
    return deployment is not None and not deployment.replica_states.get("RUNNING")


@pytest.mark.server
def test_the_in_process_runner_stops_idle_cold_pools(registry: Registry) -> None:
    """In-process mode: a cold entry's worker process exists only while used; warm ones are never reaped."""
    cold = registry.find("cold", None)
    key = registry.find("key", None)
    runner = ProcessPoolRunner(Registry(entries=(cold, key)), idle_s=1.0)
    audio = {"audio": Audio(np.zeros(16000, np.float32), 16000)}

    async def scenario() -> list[str]:
        reaper = asyncio.create_task(runner.reap_idle(every_s=0.2))
        seen = [(await runner.health())[1]["cold:1"]]
        await runner.run(cold, audio)
        seen.append((await runner.health())[1]["cold:1"])
        await asyncio.sleep(2.0)
        seen.append((await runner.health())[1]["cold:1"])
        reaper.cancel()
        return seen

    try:
        states = asyncio.run(scenario())
    finally:
        runner.close()
    assert states == ["COLD", "HEALTHY", "COLD"]
    assert not runner._pools["cold:1"].running and runner._pools["key:1"].entry.warm


@pytest.mark.parametrize("warm", ["key", "all", "none"])
def test_warm_setting_chooses_what_stays_running(warm: str) -> None:
    """--warm / MIRSTREAM_WARM replace the registry's warm set; a warm head keeps its backbone warm too."""
    from serve_app.config import DEFAULT_REGISTRY, Settings, parse_warm
    from serve_app.registry import load_registry
    from serve_app.registry.availability import resolve_availability

    registry = resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(warm=parse_warm(warm)))
    kept = {e.key for e in registry.entries if e.warm}
    if warm == "key":
        assert kept == {"key:1"}
    elif warm == "all":
        assert kept == {e.key for e in registry.entries}
    else:
        assert kept == set()
    heads = resolve_availability(load_registry(DEFAULT_REGISTRY), Settings(warm=parse_warm("mood_happy")))
    assert {e.key for e in heads.entries if e.warm} == {"mood_happy:msd-musicnn-1", "musicnn_msd:1"}
